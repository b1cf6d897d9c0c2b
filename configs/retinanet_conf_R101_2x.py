"""RetinaNet-Conf R101-FPN 2x on COCO at 600 px (paper: 38.4 AP)."""
from .common.schedules import schedule
from .retinanet_conf_R101 import dataloader, model, optimizer, train

lr_multiplier = schedule(train, 180000)
train.output_dir = "./output/retinanet_conf_R101_2x"
