"""The COCO loaders pointed at the built-in synthetic shapes dataset (tiny images, 3
classes) at the sizes of the ``instant`` preset, for the instant tests: no download,
``num_workers=0``."""
from alignment_det.data import SYNTHETIC_CLASSES
from alignment_det.config.presets import set_data

from .coco import dataloader

NUM_CLASSES = len(SYNTHETIC_CLASSES)

set_data(
    dataloader, "instant", train_dataset="synthetic_shapes_train", test_dataset="synthetic_shapes_val",
    output_dir="${...train.output_dir}",
)
