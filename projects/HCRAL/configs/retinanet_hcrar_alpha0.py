"""HCRA-R on RetinaNet R50-FPN 1x: Table 3, α = 0 (a value of ours)."""
from .retinanet_hcrar_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrar.alpha = 0.0
train.output_dir = "./output/hcral_ablations/retinanet_hcrar_alpha0"
