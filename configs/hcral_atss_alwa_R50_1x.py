"""HCRAL-ATSS R50-FPN 1x with ALWA (ALGORITHMS.md §2): ALWA_2, λ0 = 1, C = 100, weighting HCRA-C
(``loss_cls``) against HCRA-R (``loss_box_reg``); the quality loss passes through unweighted.

The detector's keys live under ``model.model.*`` (e.g. ``model.model.num_classes=20``), ALWA's under
``model.*``, as in ``retinanet_alwa_R50.py``.
"""
from detectron2.config import LazyCall as L

from alignment_det.modeling.alwa import with_alwa

from .hcral_atss_R50_1x import dataloader, lr_multiplier, optimizer, train
from .hcral_atss_R50_1x import model as _detector

model = L(with_alwa)(
    model=_detector,
    cls_keys=["loss_cls"],
    reg_keys=["loss_box_reg"],
    variant="ALWA_2",
    lambda0=1.0,
    period=100,
    stats_on="weighted",
    sync=True,
)
train.output_dir = "./output/hcral_atss_alwa_R50_1x"
