"""Table 5: FCOS+ATSS+AUX + EATSS + HCRA-R (paper: 41.7); HCRA-C off (focal loss)."""
from .hcral_atss_aux_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.use_hcrac = False
train.output_dir = "./output/hcral_ablations/aux_eatss_hcrar"
