"""HCRA-C on RetinaNet R50-FPN 1x: Table 1, θ = 6 (paper 37.4)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.theta = 6.0
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_theta6"
