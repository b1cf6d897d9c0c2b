"""Faster R-CNN R50-FPN 1x COCO with ALWA on the RPN only, as the paper (and its code,
through mmdet's ``RPNHead``) does for two-stage detectors (docs/methods.md#alwa-defaults):
α·λ0 on ``loss_rpn_cls``, λ0 on ``loss_rpn_loc``; the ROI-head losses ``loss_cls`` and
``loss_box_reg`` pass through unweighted. Detector keys as the baseline's (``model.*``);
ALWA keys: ``model.alwa.*``.
"""
from alignment_det.modeling.alwa import add_alwa

from .faster_rcnn_R50 import dataloader, lr_multiplier, model, optimizer, train

model = add_alwa(model, cls_keys=["loss_rpn_cls"], reg_keys=["loss_rpn_loc"])
train.output_dir = "./output/faster_rcnn_alwa_R50"
