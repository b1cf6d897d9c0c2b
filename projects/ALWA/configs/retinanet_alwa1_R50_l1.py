"""Paper's Table 2 comparison: RetinaNet R50-FPN 1x COCO with ALWA_1, box loss
L1 (Detectron2's RetinaNet with smooth_l1_beta = 0, also the official ALWA
code's RetinaNet loss).
The paper's Table 2 was run on VOC07; these configs keep the COCO 1x schedule of the baseline.
"""
from ....configs.retinanet_alwa_R50 import dataloader, lr_multiplier, model, optimizer, train

model.alwa.variant = "ALWA_1"
model.smooth_l1_beta = 0.0  # Detectron2 computes L1 at beta 0
train.output_dir = "./output/retinanet_alwa1_R50_l1"
