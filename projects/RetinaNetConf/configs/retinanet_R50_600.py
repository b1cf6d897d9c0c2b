"""Baseline of the ablations: plain Detectron2 RetinaNet R50-FPN 1x, trained and tested at
the same scale (600 / 1000) and with the same L1 box loss as the RetinaNet-Conf configs."""
from ....configs.retinanet_conf_R50 import dataloader, lr_multiplier, optimizer, train
from ....configs.retinanet_R50 import model

model.smooth_l1_beta = 0.0
model.box_reg_loss_type = "smooth_l1"
train.output_dir = "./output/retinanet_conf_ablations/retinanet_R50_600"
