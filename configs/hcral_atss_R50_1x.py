"""HCRAL (EATSS + HCRA-C + HCRA-R) on ATSS R50-FPN, 1x COCO: the paper's val2017 ablation setting
(ATSS 40.0 -> HCRA-C 40.4 / HCRA-R 40.2 there). Same data, solver and schedule as
``atss_R50_1x.py``; only the model differs (``configs/common/models/hcral_atss.py``)."""
from .atss_R50_1x import dataloader, lr_multiplier, optimizer, train
from .common.models.hcral_atss import model

train.output_dir = "./output/hcral_atss_R50_1x"
