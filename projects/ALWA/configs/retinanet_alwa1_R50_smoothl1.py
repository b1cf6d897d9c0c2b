"""Paper's Table 2 comparison: RetinaNet R50-FPN 1x COCO with ALWA_1, box loss
Smooth-L1 with beta = 0.11 (mmdet's RetinaNet value, the
framework of the paper; Detectron2's yaml default is 0.1).
The paper's Table 2 was run on VOC07; these configs keep the COCO 1x schedule of the baseline.
"""
from ....configs.retinanet_alwa_R50 import dataloader, lr_multiplier, model, optimizer, train

model.alwa.variant = "ALWA_1"
model.box_reg_loss_type = "smooth_l1"
model.smooth_l1_beta = 0.11
train.output_dir = "./output/retinanet_alwa1_R50_smoothl1"
