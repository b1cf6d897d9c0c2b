"""Table 5, last row (= Table 6, l = 3): FCOS+ATSS+AUX with EATSS, HCRA-R and HCRA-C, R50-FPN 1x
(paper: 42.1). HCRA-R weighs the initial box x1.5 and the refined box x2.0."""
from ....configs.hcral_atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.head.aux = True
model.box_reg_init_loss_weight = 1.5
model.box_reg_loss_weight = 2.0
train.output_dir = "./output/hcral_ablations/hcral_atss_aux_R50_1x"
