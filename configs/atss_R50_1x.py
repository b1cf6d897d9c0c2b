"""ATSS R50-FPN 1x COCO (the baseline of HCRAL; mmdetection's ``atss_r50_fpn_1x_coco``, 39.4 AP there).

Model: ``configs/common/models/atss.py`` (FCOS+ATSS, ltrb in strides, quality branch on centerness).
Data: single scale (1333, 800) + flip, as mmdet. Solver: SGD lr 0.01 at 16 images, Detectron2's 1x
(90k iterations, decays at 60k / 80k, i.e. 12.3 epochs), linear warm-up over 500 iterations from
x0.001 (mmdet's schedule_1x).
"""
from .common.data.augmentations import resize_flip
from .common.data.coco import dataloader
from .common.models.atss import model
from .common.optim import SGD as optimizer
from .common.schedules import schedule
from .common.train import train

dataloader.train.mapper.augmentations = resize_flip(800, max_size=1333)
optimizer.lr = 0.01
lr_multiplier = schedule(train, 90000, warmup_iters=500, warmup_factor=0.001)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/atss_R50_1x"
