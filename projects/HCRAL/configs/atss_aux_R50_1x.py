"""Table 5, first row: FCOS+ATSS with AUX (VFNet's star-DCN refinement), R50-FPN 1x, trained with
ATSS's losses (focal; GIoU x1.5 on the initial and x2.0 on the refined box; centerness quality
branch). Paper: 41.2."""
from ....configs.atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.head.aux = True
train.output_dir = "./output/hcral_ablations/atss_aux_R50_1x"
