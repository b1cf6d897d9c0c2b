"""Table 5: FCOS+ATSS+AUX + EATSS (paper: 41.3); HCRA-C and HCRA-R off (focal and GIoU losses)."""
from .hcral_atss_aux_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.use_hcrac = False
model.use_hcrar = False
train.output_dir = "./output/hcral_ablations/aux_eatss"
