"""HCRA-C on RetinaNet R50-FPN 1x: Table 1, M = 25 GHM bins (paper 37.3)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.bins = 25
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_bins25"
