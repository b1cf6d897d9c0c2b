"""HCRAL on ATSS R50-FPN (docs/methods.md#hcral-atss): EATSS (l = 3, anchor-IoU rank), HCRA-C (M 20,
momentum 0.75, μ 0.7, θ 5, mirrored RCI), HCRA-R (γ 1.5, α -0.1, ep 1e-3, m 0.01, λ_reg 2), the
quality branch trained on the IoU of the predicted box."""
from alignment_det.modeling.meta_arch.hcral import HCRALATSS

from .atss import model
from .hcra import hcrac, hcrar

model._target_ = HCRALATSS
model.quality_target = "iou"
model.use_eatss = True
model.eatss_num_extra = 3
model.eatss_rank_iou = "anchor"
model.use_hcrac = True
model.hcrac = hcrac
model.use_hcrar = True
model.hcrar = hcrar
model.box_reg_loss_weight = 2.0
