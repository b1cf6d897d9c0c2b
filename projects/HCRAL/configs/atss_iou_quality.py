"""Control: ATSS with its quality branch trained on the IoU of the predicted box instead of
centerness, the quality target HCRAL-ATSS uses. Beside ATSS and HCRAL-ATSS it separates the effect
of the HCRA losses and EATSS from that of the change of quality target.
"""
from ....configs.atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.quality_target = "iou"
train.output_dir = "./output/atss_iou_quality"
