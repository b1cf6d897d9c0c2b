"""Detectron2's Faster R-CNN R50-FPN 1x COCO baseline, through alignment_det's trainer.

Same model and solver as Detectron2's ``COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml``
(lr 0.02 at 16 images per batch, 90k iterations, decays at 60k and 80k).
"""
from .common.data.coco import dataloader
from .common.models.faster_rcnn import model
from .common.optim import SGD as optimizer
from .common.schedules import schedule
from .common.train import train

optimizer.lr = 0.02
lr_multiplier = schedule(train, 90000)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/faster_rcnn_R50"
