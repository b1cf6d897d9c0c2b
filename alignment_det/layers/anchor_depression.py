"""MAL anchor depression: scale down the most activated feature positions (pure torch).

Spec: docs/methods.md#mal-anchor-depression. The released code (``DeLightCMU/MAL``
``modeling/detector/retinanet.py``, ``IA_FEAT_TYPE=0``, ``IA_TYPE=5``) depresses, per image and FPN
level, the top-``rho`` positions of a class-agnostic CAM computed on *detached* features:

    g_c = mean_{h,w} U_c;   M(h, w) = sum_c g_c U_c(h, w);
    tau = sort_desc(M)[floor(H W rho)];   P = {M > tau}  (strict, so rho = 0 depresses nothing);
    V = U * (1 - (1 - scale) 1_P)          (scale = 0.25: depressed positions x 1/4).

The paper's GT-dependent operator ``V = (1 + M') o U`` is not what the code runs; this implementation runs the code's (docs/methods.md#mal-choices).
The mask carries no gradient; ``V`` is differentiable w.r.t. ``U`` (x ``scale`` on depressed positions).
"""
import math
from typing import List, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "AnchorDepression",
    "DEPRESSION_SCHEDULES",
    "class_agnostic_cam",
    "depress_features",
    "depression_mask",
    "depression_ratio",
]

DEPRESSION_SCHEDULES = ("constant", "step", "symmetric_step", "off")

# Levels of the step schedules in units of max_ratio / 5 (code IA_TYPE 1 and 5 with max 0.5:
# 0, .1, .2, .3, .4, .5 and 0, .1, .2, .3, .4, .5, .5, .4, .3, .2, .1, 0).
_STEP_LEVELS = (0, 1, 2, 3, 4, 5)
_SYMMETRIC_STEP_LEVELS = (0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0)


def depression_ratio(schedule: str, *, iteration: int, max_iter: int, max_ratio: float = 0.5) -> float:
    """Depression ratio ``rho`` at training iteration ``iteration`` (0-based, Detectron2's ``storage.iter``).

    With ``u = (iteration + 1) / max_iter`` (the code passes ``iteration + 1``):

    * ``"symmetric_step"``: 12 equal segments, ``rho = max_ratio * (0,.2,.4,.6,.8,1,1,.8,.6,.4,.2,0)[min(11, floor(12 u))]``
      (code ``IA_TYPE=5``, the MAL default; peak 0.5);
    * ``"step"``: 6 segments, ``rho = max_ratio * (0,.2,.4,.6,.8,1)[min(5, floor(6 u))]`` (``IA_TYPE=1``);
    * ``"constant"``: ``max_ratio`` (``IA_TYPE=0``);
    * ``"off"``: 0.
    """
    if schedule not in DEPRESSION_SCHEDULES:
        raise ValueError(f"unknown depression schedule {schedule!r}; use one of {DEPRESSION_SCHEDULES}")
    if schedule == "off":
        return 0.0
    if schedule == "constant":
        return float(max_ratio)
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive for the {schedule!r} schedule, got {max_iter}")
    levels = _SYMMETRIC_STEP_LEVELS if schedule == "symmetric_step" else _STEP_LEVELS
    n = len(levels)
    # floor(n * (t+1) / T) in integers: the code's ``iteration < T / n * s`` comparisons, no float drift.
    segment = min(n - 1, (n * (iteration + 1)) // max_iter)
    # max_ratio * level / 5 reproduces the code's literals exactly for max_ratio = 0.5 (e.g. 1.5 / 5 == 0.3).
    return float(max_ratio) * levels[segment] / 5


def class_agnostic_cam(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) ``M = sum_c mean_{h,w}(U_c) U_c``, in fp32, detached."""
    u = features.detach().float()
    g = u.mean(dim=(2, 3), keepdim=True)
    return (u * g).sum(dim=1)


def depression_mask(features: torch.Tensor, *, ratio: float) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) bool: positions whose CAM is strictly above the ``floor(H W ratio)``-th
    largest CAM value of the same image (0-based). Without ties exactly ``floor(H W ratio)`` are True.

    ``ratio`` must lie in [0, 1]; ``floor(H W ratio) >= H W`` (ratio 1) marks every position.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"depression ratio must be in [0, 1], got {ratio}")
    n, _, h, w = features.shape
    num = h * w
    kth = math.floor(num * ratio)  # same as the code's int(H * W * ratio)
    if num == 0 or kth == 0:
        return torch.zeros((n, h, w), dtype=torch.bool, device=features.device)
    if kth >= num:
        return torch.ones((n, h, w), dtype=torch.bool, device=features.device)
    cam = class_agnostic_cam(features).reshape(n, num)
    # The (kth+1)-th largest value; kthvalue counts from the smallest, 1-based.
    tau = cam.kthvalue(num - kth, dim=1, keepdim=True).values
    return (cam > tau).reshape(n, h, w)


def depress_features(features: torch.Tensor, *, ratio: float, scale: float = 0.25) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W) ``V = U * (1 - (1 - scale) 1_P)``; the mask has no gradient."""
    if ratio <= 0.0:
        return features
    mask = depression_mask(features, ratio=ratio)
    multiplier = torch.where(
        mask, torch.tensor(scale, dtype=features.dtype, device=features.device),
        torch.tensor(1.0, dtype=features.dtype, device=features.device),
    )
    return features * multiplier[:, None]


class AnchorDepression(nn.Module):
    """Depress the top-``rho(t)`` CAM positions of every FPN level (training only).

    Args:
        schedule: one of ``"symmetric_step"`` (code default), ``"step"``, ``"constant"``, ``"off"``.
        max_ratio: peak ratio (0.5).
        scale: factor applied to depressed positions (0.25).

    ``forward(features, iteration=t, max_iter=T)`` takes a list of (N, C, H_l, W_l) level features, the
    0-based iteration and the horizon, and returns ``(depressed features, rho)``. In ``eval()`` mode, or
    when ``rho == 0``, the input list is returned unchanged (inference never depresses, docs/methods.md#mal-defaults).
    """

    def __init__(self, *, schedule: str = "symmetric_step", max_ratio: float = 0.5, scale: float = 0.25):
        super().__init__()
        if schedule not in DEPRESSION_SCHEDULES:
            raise ValueError(f"unknown depression schedule {schedule!r}; use one of {DEPRESSION_SCHEDULES}")
        if not 0.0 <= max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in [0, 1], got {max_ratio}")
        self.schedule = schedule
        self.max_ratio = float(max_ratio)
        self.scale = float(scale)

    def extra_repr(self) -> str:
        return f"schedule={self.schedule!r}, max_ratio={self.max_ratio}, scale={self.scale}"

    def forward(
        self, features: Sequence[torch.Tensor], *, iteration: int, max_iter: int
    ) -> Tuple[List[torch.Tensor], float]:
        if not self.training:
            return list(features), 0.0
        ratio = depression_ratio(self.schedule, iteration=iteration, max_iter=max_iter, max_ratio=self.max_ratio)
        if ratio <= 0.0:
            return list(features), ratio
        return [depress_features(f, ratio=ratio, scale=self.scale) for f in features], ratio
