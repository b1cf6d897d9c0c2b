"""HCRA-C on RetinaNet R50-FPN 1x: Table 2, μ = 0.5 (a value of ours: the paper's other μ rows are not in our notes; μ = 0.7 is the default)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.mu = 0.5
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_mu05"
