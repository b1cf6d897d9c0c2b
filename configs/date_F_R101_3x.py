"""DATE-F R101-FPN, 36 epochs on COCO (paper: 42.2 AP): ``date_F_R50_3x.py`` with ResNet-101."""
from .date_F_R50_3x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/date_F_R101_3x"
