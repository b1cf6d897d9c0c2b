"""Full HCRAL on FCOS+ATSS+AUX R50-FPN 1x: EATSS ranked by the IoU of the detached predicted box instead of the anchor's (docs/methods.md#hcral-choices)."""
from .hcral_atss_aux_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.eatss_rank_iou = "pred"
train.output_dir = "./output/hcral_ablations/hcral_atss_aux_rank_pred"
