"""HCRAL on FCOS+ATSS R50-FPN, 2x with multi-scale training (the paper's test-dev setting: 44.4 AP).

2x = Detectron2's 180k iterations at 16 images (decays at 120k / 160k; 24.6 epochs for the paper's
24). Multi-scale: short side sampled in [480, 960], long side <= 1333 (mmdet's ``multiscale_mode=
'range'`` of VFNet / GFL, whose results the paper compares with). Warm-up: 500 iterations from x0.1,
the paper's ratio for its FCOS+ATSS runs (VFNet's code base; 0.001 is for its ATSS runs, docs/methods.md#hcral-defaults).
"""
from .common.data.augmentations import resize_flip
from .common.schedules import schedule
from .hcral_atss_R50_1x import dataloader, model, optimizer, train

dataloader.train.mapper.augmentations = resize_flip((480, 960), max_size=1333, sample_style="range")
lr_multiplier = schedule(train, 180000, warmup_iters=500, warmup_factor=0.1)
train.output_dir = "./output/hcral_atss_R50_2x_ms"
