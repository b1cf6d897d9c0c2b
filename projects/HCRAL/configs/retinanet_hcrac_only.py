"""HCRA-C alone on RetinaNet R50-FPN 1x (paper: FL 36.5 -> HCRA-C 37.6; Table 1's θ = 5, M = 20 row):
HCRA-R off, so the box loss is RetinaNet's L1. Base of the Table 1 / Table 2 ablations."""
from ....configs.hcral_retinanet_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.use_hcrar = False
model.hcrar = None
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_only"
