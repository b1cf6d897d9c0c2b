"""ATSS R50-FPN (docs/methods.md#atss-detector without HCRAL; mmdetection's ``atss_r50_fpn_1x_coco``), derived
from the FCOS base as upstream derives FCOS from RetinaNet: P6/P7 from P5, GN towers of 4 convs,
classifier prior 0.01, square assignment anchors of side 8·stride, top-9 candidates per level."""
from alignment_det.modeling.heads.atss_head import ATSSHead
from alignment_det.modeling.meta_arch.atss import ATSS

from .fcos import model

model._target_ = ATSS
model.anchor_scale = 8.0
model.topk = 9
model.quality_target = "centerness"
model.box_reg_loss_weight = 2.0  # GIoU x2, weighted by the centerness targets (mmdet ATSSHead)
model.box_reg_init_loss_weight = 1.5  # only with head.aux (VFNet's initial-box weight)
# mmdet ATSS test_cfg: score > 0.05 on σ(cls)·σ(quality), 1000 per level, NMS 0.6, 100 per image.
model.test_score_thresh = 0.05
model.test_topk_candidates = 1000
model.test_nms_thresh = 0.6
model.max_detections_per_image = 100

model.head._target_ = ATSSHead
model.head.aux = False
model.head.anchor_scale = "${..anchor_scale}"
model.head.gradient_mul = 0.1
model.head.dcn_on_last_conv = False
