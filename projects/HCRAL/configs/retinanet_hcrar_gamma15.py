"""HCRA-R on RetinaNet R50-FPN 1x: Table 4, γ = 1.5 (the paper's ATSS value, on RetinaNet)."""
from .retinanet_hcrar_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrar.gamma = 1.5
train.output_dir = "./output/hcral_ablations/retinanet_hcrar_gamma15"
