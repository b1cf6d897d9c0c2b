"""Detectron2's FCOS R50-FPN 1x COCO baseline, through alignment_det's trainer.

Same as Detectron2's ``configs/COCO-Detection/fcos_R_50_FPN_1x.py``.
"""
from .common.data.coco import dataloader
from .common.models.fcos import model
from .common.optim import SGD as optimizer
from .common.schedules import lr_multiplier_1x as lr_multiplier
from .common.train import train

optimizer.lr = 0.01
train.max_iter = 90000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/fcos_R50"
