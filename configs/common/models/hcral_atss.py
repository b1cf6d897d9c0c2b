"""HCRAL on ATSS R50-FPN (docs/methods.md#hcral-atss): EATSS (l = 3, anchor-IoU rank), HCRA-C (M 20,
momentum 0.75, μ 0.7, θ 5, mirrored RCI), HCRA-R (γ 1.5, α -0.1, ep 1e-3, m 0.01, λ_reg 2), the
quality branch trained on the IoU of the predicted box."""
from detectron2.config import LazyCall as L

from alignment_det.losses.hcra import HCRACLoss, HCRARLoss
from alignment_det.modeling.meta_arch.hcral import HCRALATSS

from .atss import model

model._target_ = HCRALATSS
model.quality_target = "iou"
model.use_eatss = True
model.eatss_num_extra = 3
model.eatss_rank_iou = "anchor"
model.use_hcrac = True
model.hcrac = L(HCRACLoss)(
    bins=20,
    momentum=0.75,
    mu=0.7,
    theta=5.0,
    alpha=0.0,
    rci_mode="mirrored",  # docs/methods.md#hcral-choices; "literal" = Eq. 5 as printed
    use_rci=True,
    ema_init="first",  # GHM EMA seeded with the first counts; "zero" = mmdet
    beta_cap=None,
    sync=True,
)
model.use_hcrar = True
model.hcrar = L(HCRARLoss)(gamma=1.5, alpha=-0.1, ep=1e-3, momentum=0.01, sync=True)
model.box_reg_loss_weight = 2.0
