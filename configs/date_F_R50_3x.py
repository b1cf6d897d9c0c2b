"""DATE-F R50-FPN, 36 epochs on COCO (paper: 40.6 AP), as the DATE code's date_r50_36e_8x2.

Same model and optimizer as ``date_F_R50_1x.py``; DETR-style multi-scale training and the real
36-epoch schedule (docs/methods.md#date-defaults), not Detectron2's "3x" (270k iterations, decays at
210k / 250k = epochs 28.7 / 34.1).

Schedule arithmetic, 16 images per iteration (8 GPUs x 2), COCO train2017 with Detectron2's
``filter_empty=True`` = 117,266 images:
    iterations per epoch = 117,266 / 16 = 7,329.1
    36 epochs            = 263,848 iterations  (max_iter)
    decay at epoch 24    = 175,899 iterations
    decay at epoch 33    = 241,861 iterations
(~264k iterations; with all 118,287 images it would be 266,146.)
"""

from .common.data.augmentations import detr_multiscale_crop
from .common.schedules import schedule
from .date_F_R50_1x import dataloader, model, optimizer, train

IMAGES_PER_BATCH = 16
COCO_TRAIN_IMAGES = 117266  # train2017 images with at least one non-crowd box
ITERS_PER_EPOCH = COCO_TRAIN_IMAGES / IMAGES_PER_BATCH
MAX_ITER = int(round(36 * ITERS_PER_EPOCH))  # 263,848
STEPS = [int(round(24 * ITERS_PER_EPOCH)), int(round(33 * ITERS_PER_EPOCH))]  # 175,899 / 241,861

lr_multiplier = schedule(train, MAX_ITER, STEPS, warmup_iters=1000, warmup_factor=0.001)
train.output_dir = "./output/date_F_R50_3x"
dataloader.train.total_batch_size = IMAGES_PER_BATCH

# DETR-style multi-scale + random-crop augmentation, as the DATE code's coco_det_3x.
dataloader.train.mapper.augmentations = detr_multiscale_crop(range(480, 801, 32), max_size=1333)
