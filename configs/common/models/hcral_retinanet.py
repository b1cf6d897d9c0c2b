"""HCRA-C and HCRA-R on Detectron2's RetinaNet R50-FPN (docs/methods.md#hcral-on-retinanet): anchors, max-IoU
labels and inference unchanged; HCRA-R with γ 1.2 and λ_reg 2.5 (paper §4)."""
from alignment_det.modeling.meta_arch.hcral import HCRALRetinaNet

from .hcra import hcrac, hcrar
from .retinanet import model

model._target_ = HCRALRetinaNet
model.use_hcrac = True
model.hcrac = hcrac
model.use_hcrar = True
model.hcrar = hcrar
model.hcrar.gamma = 1.2
model.box_reg_loss_weight = 2.5
