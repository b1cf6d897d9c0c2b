"""ATSS R50-FPN 1x + HCRA-C alone (paper: ATSS 40.0 -> 40.4). The quality branch keeps HCRAL's IoU target."""
from ....configs.hcral_atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.use_eatss = False
model.use_hcrar = False
train.output_dir = "./output/hcral_ablations/atss_hcrac_only"
