"""HCRA-R on RetinaNet R50-FPN 1x: Table 3, ep = 0.01 (a value of ours; 0.001 is the paper's)."""
from .retinanet_hcrar_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrar.ep = 1e-2
train.output_dir = "./output/hcral_ablations/retinanet_hcrar_ep001"
