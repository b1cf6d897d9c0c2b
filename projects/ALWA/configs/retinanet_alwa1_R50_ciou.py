"""Paper's Table 2 comparison: RetinaNet R50-FPN 1x COCO with ALWA_1, box loss
CIoU on boxes decoded from the anchors (the paper's third loss;
for GIoU override box_reg_loss_type=giou).
The paper's Table 2 was run on VOC07; these configs keep the COCO 1x schedule of the baseline.
"""
from ....configs.retinanet_alwa_R50 import dataloader, lr_multiplier, model, optimizer, train

model.alwa.variant = "ALWA_1"
model.box_reg_loss_type = "ciou"
train.output_dir = "./output/retinanet_alwa1_R50_ciou"
