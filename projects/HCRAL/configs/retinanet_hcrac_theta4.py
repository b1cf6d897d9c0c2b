"""HCRA-C on RetinaNet R50-FPN 1x: Table 1, θ = 4 (paper 37.5)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.theta = 4.0
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_theta4"
