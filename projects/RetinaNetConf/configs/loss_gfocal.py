"""Loss variant: GFocal-style |y - p|^beta-weighted BCE on positives (paper: 35.2 AP)."""
from ....configs.retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model.obj_loss_type = "gfocal"
model.gfocal_beta = 2.0  # QualityFocalLoss's default; the paper does not state its beta
train.output_dir = "./output/retinanet_conf_ablations/loss_gfocal"
