"""HCRAL on FCOS+ATSS R101-FPN, 2x + multi-scale training (paper, test-dev: 46.1 AP):
``hcral_atss_R50_2x_ms.py`` with ResNet-101."""
from .hcral_atss_R50_2x_ms import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/hcral_atss_R101_2x_ms"
