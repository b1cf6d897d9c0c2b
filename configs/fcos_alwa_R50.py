"""FCOS R50-FPN 1x COCO with ALWA (ALGORITHMS.md §2.5, not in the paper): α·λ0 on
``loss_fcos_cls``, λ0 on ``loss_fcos_loc``, ``loss_fcos_ctr`` (centerness) unweighted.
Detector keys: ``model.model.*``; ALWA keys: ``model.*``."""
from detectron2.config import LazyCall as L

from alignment_det.modeling.alwa import with_alwa

from .fcos_R50 import dataloader, lr_multiplier, optimizer, train
from .fcos_R50 import model as _detector

model = L(with_alwa)(
    model=_detector,
    cls_keys=["loss_fcos_cls"],
    reg_keys=["loss_fcos_loc"],
    variant="ALWA_2",
    lambda0=1.0,
    period=100,
    stats_on="weighted",
    sync=True,
)
train.output_dir = "./output/fcos_alwa_R50"
