"""Loaders over the built-in synthetic shapes dataset (tiny images, 3 classes), for the
instant tests: no download, ``num_workers=0``."""
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from omegaconf import OmegaConf

from alignment_det.data import SYNTHETIC_CLASSES, get_dataset_dicts

NUM_CLASSES = len(SYNTHETIC_CLASSES)

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_dataset_dicts)(names="synthetic_shapes_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(112, 128, 144), sample_style="choice", max_size=192),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=False,
    ),
    total_batch_size=4,
    num_workers=0,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_dataset_dicts)(names="synthetic_shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=128, max_size=192)],
        image_format="BGR",
    ),
    num_workers=0,
)
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", output_dir="${...train.output_dir}")
