"""FCOS R50-FPN 1x COCO with ALWA (docs/methods.md#alwa-choices, not in the paper): α·λ0 on
``loss_fcos_cls``, λ0 on ``loss_fcos_loc``, ``loss_fcos_ctr`` (centerness) unweighted.
Detector keys as the baseline's (``model.*``); ALWA keys: ``model.alwa.*``."""
from alignment_det.modeling.alwa import add_alwa

from .fcos_R50 import dataloader, lr_multiplier, model, optimizer, train

model = add_alwa(model, cls_keys=["loss_fcos_cls"], reg_keys=["loss_fcos_loc"])
train.output_dir = "./output/fcos_alwa_R50"
