"""ALWA composed with one of this project's methods: RetinaNet-Conf R50 1x with adaptive
weights on its classification (``loss_cls``) vs box (``loss_box_reg``) losses; the
object-confidence loss ``loss_obj`` is left at weight 1. Detector keys as the baseline's
(``model.*``); ALWA keys: ``model.alwa.*``."""
from alignment_det.modeling.alwa import add_alwa

from .retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model = add_alwa(model, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"])
train.output_dir = "./output/retinanet_conf_alwa_R50"
