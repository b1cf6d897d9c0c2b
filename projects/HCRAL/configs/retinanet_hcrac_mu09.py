"""HCRA-C on RetinaNet R50-FPN 1x: Table 2, μ = 0.9 (a value of ours, as μ = 0.5)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.mu = 0.9
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_mu09"
