import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

# Per-parameter lr policies for ``optimizer.params.lr_factor_func``, e.g. DATE's
# ``L(backbone_lr_factor)(factor=0.1)`` (the ResNet at x0.1, FPN and head at x1).
from alignment_det.utils.lr_factor import backbone_lr_factor  # noqa: F401

# params.model is set to the model by the trainer before instantiation.
SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
)

AdamW = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(base_lr="${..lr}", weight_decay_norm=0.0),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)
