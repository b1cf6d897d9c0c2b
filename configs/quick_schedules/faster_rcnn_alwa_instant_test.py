"""Faster R-CNN + ALWA on the RPN (as ``faster_rcnn_alwa_R50.py``), tiny, on the synthetic dataset.

C = 10, as the RetinaNet ALWA instant test, so that α is re-estimated within 100 iterations.
"""
from detectron2.config import LazyCall as L

from alignment_det.modeling.alwa import with_alwa

from ..faster_rcnn_R50 import dataloader, optimizer, train
from ..faster_rcnn_R50 import model as _detector
from .instant_common import shrink_two_stage

lr_multiplier = shrink_two_stage(
    _detector, dataloader, optimizer, train, output_dir="./output/faster_rcnn_alwa_instant_test"
)
model = L(with_alwa)(
    model=_detector,
    cls_keys=["loss_rpn_cls"],
    reg_keys=["loss_rpn_loc"],
    variant="ALWA_2",
    lambda0=1.0,
    period=10,
    stats_on="weighted",
    sync=True,
)
