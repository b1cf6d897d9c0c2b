"""Per-parameter learning-rate factors (``lr_factor_func`` of Detectron2's
``get_default_optimizer_params``), applied by the configs' optimizer helpers
(``configs/common/optim.py``).

Each is a factory, so that a config writes ``L(backbone_lr_factor)(factor=0.1)`` and survives
``LazyConfig.save``: a bare function value would be pickled, and one defined in a config file cannot
be imported back from the saved yaml.
"""
from typing import Callable

__all__ = ["backbone_lr_factor"]


def backbone_lr_factor(factor: float = 0.1) -> Callable[[str], float]:
    """``lr(name) = factor · lr`` for the ResNet, ``lr`` elsewhere (mmdet
    ``paramwise_cfg.custom_keys={'backbone': lr_mult 0.1}``).

    Detectron2's ``backbone`` module is the FPN and holds the ResNet as ``backbone.bottom_up``;
    mmdet's ``backbone`` is the ResNet alone, its FPN (``neck``) trains at the full rate. So the
    factor goes to ``backbone.*`` except the FPN's own layers, ``backbone.fpn_*`` (lateral and
    output convs) and ``backbone.top_block.*`` (P6/P7). A backbone without FPN gets it whole.
    """
    factor = float(factor)

    def lr_factor_func(name: str) -> float:
        if name.startswith(("backbone.fpn_", "backbone.top_block.")):
            return 1.0
        return factor if name.startswith("backbone.") else 1.0

    return lr_factor_func
