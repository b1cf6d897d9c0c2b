"""ATSS R50-FPN 1x + EATSS alone (the paper reports it with AUX only, Table 5). The quality branch keeps HCRAL's IoU target."""
from ....configs.hcral_atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.use_hcrac = False
model.use_hcrar = False
train.output_dir = "./output/hcral_ablations/atss_eatss_only"
