"""HCRA-R on RetinaNet R50-FPN 1x: Table 3, α = +0.1 (the value the paper's prose gives; its table says -0.1)."""
from .retinanet_hcrar_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrar.alpha = 0.1
train.output_dir = "./output/hcral_ablations/retinanet_hcrar_alpha_pos01"
