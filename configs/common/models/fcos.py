"""Detectron2's FCOS R50-FPN, derived from the RetinaNet base as upstream does; built as
``alignment_det``'s ``FCOS`` (Detectron2's class with its losses in fp32 under autocast)."""
from detectron2.modeling.meta_arch.fcos import FCOSHead

from alignment_det.modeling.meta_arch import FCOS

from .retinanet import model

model._target_ = FCOS
del model.anchor_generator
del model.box2box_transform
del model.anchor_matcher
del model.input_format

# P6/P7 from P5, not C5 (FCOS paper, Sec 2.2 of arXiv:2006.09214).
model.backbone.top_block.in_feature = "p5"
model.backbone.top_block.in_channels = 256
# Threshold on sqrt(cls * centerness), as Detectron2's FCOS baseline.
model.test_score_thresh = 0.2
model.test_nms_thresh = 0.6

model.head._target_ = FCOSHead
del model.head.num_anchors
model.head.norm = "GN"
