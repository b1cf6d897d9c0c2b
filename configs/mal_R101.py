"""MAL R101-FPN on COCO (docs/methods.md#mal-defaults, code ``mal_R-101-FPN.yaml``): as ``mal_R50`` with a
ResNet-101 backbone and the longer schedule, 180k iterations with decays at 120k / 160k; bag size 40,
short side 800."""
from .common.schedules import schedule
from .mal_R50 import dataloader, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
model.anchor_bag_size = 40

train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/mal_R101"

lr_multiplier = schedule(train, 180000, [120000, 160000], warmup_iters=500, warmup_factor=1.0 / 3)
