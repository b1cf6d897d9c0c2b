"""HCRA-R alone on RetinaNet R50-FPN 1x (paper: L1 36.5 -> HCRA-R 37.4; γ = 1.2, α = -0.1, ep = 1e-3,
λ_reg = 2.5): HCRA-C off, so the classification loss is RetinaNet's focal loss. Base of the Table 3 /
Table 4 ablations."""
from ....configs.hcral_retinanet_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.use_hcrac = False
model.hcrac = None
train.output_dir = "./output/hcral_ablations/retinanet_hcrar_only"
