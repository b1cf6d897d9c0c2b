"""HCRA-C on RetinaNet R50-FPN 1x: Table 1, no RCI factor (paper 37.4)."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.use_rci = False
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_no_rci"
