"""Faster R-CNN R50-FPN 1x COCO with ALWA on the RPN only, as the paper (and its code,
through mmdet's ``RPNHead``) does for two-stage detectors (ALGORITHMS.md §2.3, §2.6):
α·λ0 on ``loss_rpn_cls``, λ0 on ``loss_rpn_loc``; the ROI-head losses ``loss_cls`` and
``loss_box_reg`` pass through unweighted. Detector keys: ``model.model.*``; ALWA keys: ``model.*``.
"""
from detectron2.config import LazyCall as L

from alignment_det.modeling.alwa import with_alwa

from .faster_rcnn_R50 import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_R50 import model as _detector

model = L(with_alwa)(
    model=_detector,
    cls_keys=["loss_rpn_cls"],
    reg_keys=["loss_rpn_loc"],
    variant="ALWA_2",
    lambda0=1.0,
    period=100,
    stats_on="weighted",
    sync=True,
)
train.output_dir = "./output/faster_rcnn_alwa_R50"
