"""Baseline of the paper's Table 2 comparison, no ALWA: RetinaNet R50-FPN 1x COCO, box loss
CIoU on boxes decoded from the anchors (the paper's third loss;
for GIoU override box_reg_loss_type=giou).
The paper's Table 2 was run on VOC07; these configs keep the COCO 1x schedule of the baseline.
"""
from ....configs.retinanet_R50 import dataloader, lr_multiplier, model, optimizer, train

model.box_reg_loss_type = "ciou"
train.output_dir = "./output/retinanet_R50_ciou"
