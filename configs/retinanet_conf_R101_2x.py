"""RetinaNet-Conf R101-FPN 2x on COCO at 600 px (paper: 38.4 AP)."""
from .common.schedules import lr_multiplier_2x as lr_multiplier
from .retinanet_conf_R101 import dataloader, model, optimizer, train

train.max_iter = 180000
train.output_dir = "./output/retinanet_conf_R101_2x"
