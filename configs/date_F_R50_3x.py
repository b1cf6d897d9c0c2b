"""DATE-F R50-FPN, 36 epochs on COCO (paper: 40.6 AP), as the DATE code's date_r50_36e_8x2.

Same model and optimizer as ``date_F_R50_1x.py``; DETR-style multi-scale training and the real
36-epoch schedule (ALGORITHMS.md §4.3 / §8), not Detectron2's "3x" (270k iterations, decays at
210k / 250k = epochs 28.7 / 34.1).

Schedule arithmetic, 16 images per iteration (8 GPUs x 2), COCO train2017 with Detectron2's
``filter_empty=True`` = 117,266 images:
    iterations per epoch = 117,266 / 16 = 7,329.1
    36 epochs            = 263,848 iterations  (max_iter)
    decay at epoch 24    = 175,899 iterations
    decay at epoch 33    = 241,861 iterations
(~264k iterations; with all 118,287 images it would be 266,146.)
"""
from detectron2.config import LazyCall as L
from detectron2.data import transforms as T

from .common.schedules import multistep
from .date_F_R50_1x import dataloader, model, optimizer, train

IMAGES_PER_BATCH = 16
COCO_TRAIN_IMAGES = 117266  # train2017 images with at least one non-crowd box
ITERS_PER_EPOCH = COCO_TRAIN_IMAGES / IMAGES_PER_BATCH
MAX_ITER = int(round(36 * ITERS_PER_EPOCH))  # 263,848
STEPS = [int(round(24 * ITERS_PER_EPOCH)), int(round(33 * ITERS_PER_EPOCH))]  # 175,899 / 241,861

lr_multiplier = multistep(MAX_ITER, STEPS, warmup_iters=1000, warmup_factor=0.001)
train.max_iter = MAX_ITER
train.output_dir = "./output/date_F_R50_3x"
dataloader.train.total_batch_size = IMAGES_PER_BATCH

# DETR-style augmentation (the DATE code's coco_det_3x): flip; with probability 0.5 resize the short
# side to 400/500/600 and take a random crop of 384-600 px; then multi-scale 480..800 (max 1333).
# The crop branch followed by the final resize is the AutoAugment policy's second branch; without it
# the final resize alone is its first branch.
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(T.RandomApply)(
        tfm_or_aug=L(T.AugmentationList)(
            augs=[
                L(T.ResizeShortestEdge)(short_edge_length=(400, 500, 600), max_size=1333, sample_style="choice"),
                L(T.RandomCrop)(crop_type="absolute_range", crop_size=(384, 600)),
            ]
        ),
        prob=0.5,
    ),
    L(T.ResizeShortestEdge)(
        short_edge_length=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800),
        max_size=1333,
        sample_style="choice",
    ),
]
