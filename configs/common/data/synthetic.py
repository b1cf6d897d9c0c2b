"""The COCO loaders pointed at the built-in synthetic shapes dataset (tiny images, 3
classes), for the instant tests: no download, ``num_workers=0``."""
from detectron2.config import LazyCall as L
from detectron2.data import transforms as T

from alignment_det.data import SYNTHETIC_CLASSES

from .coco import dataloader

NUM_CLASSES = len(SYNTHETIC_CLASSES)

dataloader.train.dataset.names = "synthetic_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(112, 128, 144), sample_style="choice", max_size=192),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.reference_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "synthetic_shapes_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=192)]
dataloader.test.num_workers = 0
dataloader.evaluator.output_dir = "${...train.output_dir}"
