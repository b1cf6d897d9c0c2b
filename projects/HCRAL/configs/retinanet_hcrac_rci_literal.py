"""HCRA-C on RetinaNet R50-FPN 1x: Eq. 5 as printed (docs/methods.md#hcral-choices): positives scoring below their IoU get no loss."""
from .retinanet_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.rci_mode = "literal"
train.output_dir = "./output/hcral_ablations/retinanet_hcrac_rci_literal"
