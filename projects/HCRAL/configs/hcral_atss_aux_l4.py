"""Full HCRAL on FCOS+ATSS+AUX R50-FPN 1x: Table 6, l = 4 (paper 41.9)."""
from .hcral_atss_aux_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.eatss_num_extra = 4
train.output_dir = "./output/hcral_ablations/hcral_atss_aux_l4"
