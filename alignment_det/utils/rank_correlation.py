"""Spearman rank correlation on torch tensors, cheap enough to log every training step.

The training-time alignment signal (``align/score_iou_corr``) is the Spearman correlation between
the predicted score of each positive and the IoU of its predicted box with its ground truth. Both
tensors already exist in every loss, so the cost is one sort per tensor. Torch-only (pure layer): the
evaluation metrics use scipy on numpy arrays instead, and the tests check the two agree.
"""
from typing import Optional

import torch

__all__ = ["average_ranks", "spearman_correlation"]


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N,) float64 ranks starting at 1, tied values sharing the mean of their ranks.

    Example: ``[10, 20, 20, 5] -> [2, 3.5, 3.5, 1]`` (the two 20s hold ranks 3 and 4).
    """
    if values.dim() != 1:
        raise ValueError(f"average_ranks expects a 1-d tensor, got shape {tuple(values.shape)}")
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, dim=0).to(torch.float64)  # rank of the last element of each tie group
    first = last - counts.to(torch.float64) + 1.0
    return ((first + last) / 2.0)[inverse]


def spearman_correlation(x: torch.Tensor, y: torch.Tensor) -> Optional[torch.Tensor]:
    """Spearman's rho of paired samples: the Pearson correlation of their average ranks.

    Args:
        x, y: (N,) paired values (any float dtype, any device; gradients are not tracked).

    Returns:
        a 0-d float64 tensor in [-1, 1], or ``None`` when undefined: fewer than 2 pairs with both
        values finite (pairs with a NaN or inf are dropped first), or one side constant (all tied).
    """
    if x.shape != y.shape or x.dim() != 1:
        raise ValueError(f"spearman_correlation expects two (N,) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.detach(), y.detach()
    finite = torch.isfinite(x) & torch.isfinite(y)
    if not bool(finite.all()):
        x, y = x[finite], y[finite]
    if x.numel() < 2:
        return None
    rx = average_ranks(x)
    ry = average_ranks(y)
    rx = rx - rx.mean()
    ry = ry - ry.mean()
    denom = torch.sqrt((rx * rx).sum() * (ry * ry).sum())
    if float(denom) == 0.0:  # a constant side: the correlation is undefined, not 0
        return None
    return ((rx * ry).sum() / denom).clamp(-1.0, 1.0)
