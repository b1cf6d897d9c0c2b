"""RetinaNet + ALWA, tiny, on the synthetic dataset (~20 s on CPU).

C = 10 instead of 100 so that α is re-estimated ten times within the 100 iterations, and
``log_period = 1`` so that metrics.json holds ``alwa_weight`` for every iteration (the
plot of ``projects/ALWA/plot_weight.py`` and the resume test read it).
"""
from alignment_det.modeling.alwa import add_alwa

from ..retinanet_R50 import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/retinanet_alwa_instant_test"
)
model = add_alwa(model, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"], period=10)
train.log_period = 1
