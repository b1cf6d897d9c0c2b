"""ATSS losses on plain tensors (Zhang et al., CVPR 2020), as mmdetection's ``ATSSHead.loss``.

Normalisers are means over ranks (mmdet's ``reduce_mean``,
:func:`alignment_det.utils.comm.positive_normalizer`), not Detectron2's EMA of the positive count,
so every rank must call these on every step. Images without ground truth are fine: the
classification term always covers every prior.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from alignment_det.losses.focal import focal_targets, sigmoid_focal_loss_jit
from alignment_det.utils.boxes import aligned_giou
from alignment_det.utils.comm import positive_normalizer

__all__ = ["atss_losses", "centerness_giou_loss", "focal_cls_loss", "quality_loss"]


def focal_cls_loss(cls_logits: torch.Tensor, labels: torch.Tensor, normalizer: torch.Tensor, *,
                   alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """``Σ_{r,k} FL(cls[r,k], y[r,k]) / n`` over every (prior, class), ``y = onehot(labels)``
    (:func:`~alignment_det.losses.focal.focal_targets`; background rows all 0).

    Args:
        cls_logits: (..., K); labels: (...) int64 in [0, K] (K = background);
        normalizer: ``n = max(mean over ranks of #positives, 1)``.
    """
    targets = focal_targets(labels, cls_logits.shape[-1], cls_logits.dtype)
    return sigmoid_focal_loss_jit(cls_logits, targets, alpha, gamma, "sum") / normalizer


def centerness_giou_loss(boxes: torch.Tensor, gt_boxes: torch.Tensor, centerness: torch.Tensor,
                         normalizer: torch.Tensor) -> torch.Tensor:
    """``Σ_p c*_p · (1 - GIoU(b_p, g_p)) / C``: GIoU loss of the positives weighted by their
    centerness targets.

    Args:
        boxes: (P, 4) XYXY decoded predictions (with gradient); gt_boxes: (P, 4) their GTs;
        centerness: (P,) centerness targets ``c*``; normalizer: ``C = max(mean over ranks of Σ_p c*_p, 1)``.
    """
    return (centerness * (1.0 - aligned_giou(boxes.float(), gt_boxes.float()))).sum() / normalizer


def atss_losses(
    cls_logits: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    centerness: torch.Tensor,
    quality_logits: torch.Tensor,
    quality_targets: torch.Tensor,
    normalizer: torch.Tensor,
    *,
    init_boxes: Optional[torch.Tensor] = None,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_weight: float = 2.0,
    box_init_weight: float = 1.5,
) -> Dict[str, torch.Tensor]:
    """The ATSS losses, with ``n = max(mean over ranks of #pos, 1)`` and
    ``C = max(mean over ranks of Σ_p c*_p, 1)``:

    * ``loss_cls          = Σ_{r,k} FL(cls[r,k], onehot[r,k]) / n`` (α 0.25, γ 2, every prior);
    * ``loss_box_reg      = w_box  · Σ_p c*_p · (1 - GIoU(b_p, g_p)) / C``;
    * ``loss_box_reg_init = w_init · Σ_p c*_p · (1 - GIoU(b⁰_p, g_p)) / C`` (only with ``init_boxes``,
      VFNet's initial box of the head's AUX);
    * ``loss_quality      = Σ_p BCE(q_p, t_p) / n``, ``t`` = ``c*`` (ATSS) or the IoU of ``b_p`` (HCRAL).

    Args:
        cls_logits: (N, R, K); labels: (N, R) int64 in [0, K] (K = background);
        boxes / init_boxes: (P, 4) decoded (final / initial) boxes of the positives; gt_boxes: (P, 4);
        centerness: (P,) ``c*`` of each positive's point in its GT;
        quality_logits: (P,) the quality branch at the positives; quality_targets: (P,) ``t``;
        normalizer: ``n``.
    """
    ctr_normalizer = positive_normalizer(centerness.sum())
    losses = {
        "loss_cls": focal_cls_loss(cls_logits, labels, normalizer, alpha=focal_alpha, gamma=focal_gamma),
        "loss_box_reg": box_weight * centerness_giou_loss(boxes, gt_boxes, centerness, ctr_normalizer),
    }
    if init_boxes is not None:
        losses["loss_box_reg_init"] = box_init_weight * centerness_giou_loss(init_boxes, gt_boxes, centerness, ctr_normalizer)
    losses["loss_quality"] = quality_loss(quality_logits, quality_targets, normalizer)
    return losses


def quality_loss(quality_logits: torch.Tensor, quality_targets: torch.Tensor, normalizer: torch.Tensor) -> torch.Tensor:
    """``Σ_p BCE(q_p, t_p) / n`` of the quality (centerness / IoU) branch at the positives."""
    return F.binary_cross_entropy_with_logits(quality_logits, quality_targets, reduction="sum") / normalizer
