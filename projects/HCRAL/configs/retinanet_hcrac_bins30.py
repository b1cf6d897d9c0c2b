"""HCRA-C on RetinaNet R50-FPN 1x: Table 1, M = 30 GHM bins (paper 37.5)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.bins = 30
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_bins30"
