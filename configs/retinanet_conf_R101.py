"""RetinaNet-Conf R101-FPN 1x on COCO at 600 px (paper: RetinaNet 37.0 -> 38.0 AP)."""
from .retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/retinanet_conf_R101"
