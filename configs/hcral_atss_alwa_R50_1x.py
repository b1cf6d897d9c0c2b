"""HCRAL-ATSS R50-FPN 1x with ALWA (docs/methods.md#alwa): ALWA_2, λ0 = 1, C = 100, weighting HCRA-C
(``loss_cls``) against HCRA-R (``loss_box_reg``); the quality loss passes through unweighted.

Detector keys as the baseline's (``model.num_classes=20``); ALWA keys: ``model.alwa.*``, as in
``retinanet_alwa_R50.py``.
"""
from alignment_det.modeling.alwa import add_alwa

from .hcral_atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model = add_alwa(model, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"])
train.output_dir = "./output/hcral_atss_alwa_R50_1x"
