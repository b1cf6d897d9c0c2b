"""HCRA-C and HCRA-R on Detectron2's RetinaNet R50-FPN (docs/methods.md#hcral-on-retinanet): anchors, max-IoU
labels and inference unchanged; HCRA-R with γ 1.2 and λ_reg 2.5 (paper §4)."""
from detectron2.config import LazyCall as L

from alignment_det.losses.hcra import HCRACLoss, HCRARLoss
from alignment_det.modeling.meta_arch.hcral import HCRALRetinaNet

from .retinanet import model

model._target_ = HCRALRetinaNet
model.use_hcrac = True
model.hcrac = L(HCRACLoss)(
    bins=20, momentum=0.75, mu=0.7, theta=5.0, alpha=0.0, rci_mode="mirrored", use_rci=True,
    ema_init="first", beta_cap=None, sync=True,
)
model.use_hcrar = True
model.hcrar = L(HCRARLoss)(gamma=1.2, alpha=-0.1, ep=1e-3, momentum=0.01, sync=True)
model.box_reg_loss_weight = 2.5
