"""RetinaNet R50-FPN 1x COCO with ALWA (docs/methods.md#alwa): ALWA_2, λ0 = 1, C = 100.

The baseline ``retinanet_R50.py`` (L1 box loss: Detectron2's RetinaNet with
``smooth_l1_beta=0``, which is also the official ALWA code's RetinaNet loss) with ALWA added
by ``add_alwa`` at its defaults, the paper's settings: ALWA_2 (the official code's active variant;
the paper's prose favours ALWA_1), λ0 = 1, C = 100, statistics on the weighted losses (faithful;
``stats_on="raw"`` is the opt-in fix of docs/methods.md#alwa-choices), all-reduced. ``loss_cls`` is weighted by α·λ0 and
``loss_box_reg`` by λ0. The detector's
keys stay where the baseline has them (``model.num_classes=20``); ALWA's are ``model.alwa.*``
(``model.alwa.variant=ALWA_1 model.alwa.period=200``). Variants with other box losses:
``projects/ALWA/configs/``.
"""
from alignment_det.modeling.alwa import add_alwa

from .retinanet_R50 import dataloader, lr_multiplier, model, optimizer, train

model = add_alwa(model, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"])
train.output_dir = "./output/retinanet_alwa_R50"
