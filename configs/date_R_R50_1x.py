"""DATE-R R50-FPN, 12 epochs on COCO (paper: 37.0 AP; 37.6 with separate subnets,
``model.head.share_subnets=False``).

``date_F_R50_1x.py`` with a RetinaNet-style one-to-many branch (docs/methods.md#date-losses): 9 anchors
per location (octave base 4, scales 2^0, 2^(1/3), 2^(2/3), ratios 0.5 / 1 / 2), Detectron2's
``Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)``, focal x2 + L1 on
``Box2BoxTransform`` deltas (weights 1) x2. Inference keeps the top 1000 per level (the DATE-R code's
``nms_pre``), still no NMS.
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher

from .date_F_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.o2m = "retinanet"  # the head follows through ${..o2m}
model.head.num_anchors = 9
model.o2m_loss_weights = (2.0, 2.0)  # λ_o2m = 2 as per-loss weights, as the code
model.o2m_anchor_generator = L(DefaultAnchorGenerator)(
    sizes=[[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]],
    aspect_ratios=[0.5, 1.0, 2.0],
    strides=[8, 16, 32, 64, 128],
    offset=0.0,
)
model.o2m_box2box_transform = L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0])
model.o2m_anchor_matcher = L(Matcher)(thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True)
model.test_topk_candidates = 1000
train.output_dir = "./output/date_R_R50_1x"
