"""Object-confidence loss of RetinaNet-Conf (arXiv 2011.10465; docs/methods.md#retinanet-conf-object-confidence).

The confidence branch predicts, per anchor, how well the anchor's *decoded box*
overlaps its matched ground truth. Its target is that IoU, computed without
gradient, and its loss is binary cross-entropy with logits::

    y_r  = IoU(decode(deltas_r, anchor_r), matched_gt_r)            (no grad, in [0, 1])
    L    = ( Σ_{r ∈ pos} BCE(x_r, y_r)  +  w · Σ_{r ∈ neg} BCE(x_r, 0) ) / normalizer

``w = 0`` (default) is the paper's plain "CE on positives"; ``w > 0`` is its
``CELoss_w`` variant (w = 1e-4 in the paper). ``neg`` are anchors labelled
background; anchors the matcher ignores (IoU between the two thresholds) never
contribute. ``normalizer`` is what the meta-architecture divides its other losses
by (Detectron2's EMA of the number of positive anchors), so the three RetinaNet-Conf
losses share one scale with weights 1 / 1 / 1.

Torch only: no Detectron2, no torchvision.
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F

__all__ = ["objectness_loss"]


def objectness_loss(
    obj_logits: torch.Tensor,
    targets: torch.Tensor,
    positive_mask: torch.Tensor,
    *,
    normalizer: Union[float, torch.Tensor],
    valid_mask: Optional[torch.Tensor] = None,
    neg_weight: float = 0.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """BCE-with-logits of the object-confidence branch against IoU targets.

    ``L = (Σ_pos BCE(x, y) + neg_weight · Σ_neg BCE(x, 0)) / normalizer``

    Args:
        obj_logits: confidence logits, (N, R) over the batch, or (M,) for any flat
            selection; a trailing singleton dim, (N, R, 1) as the head emits it, is dropped.
        targets: IoU targets in [0, 1], either dense (same shape as ``obj_logits``; only
            the positive entries are read) or compact, (P,) with one value per positive
            in row-major order of ``positive_mask`` -- exactly the order of
            ``tensor[positive_mask]``, i.e. what :func:`alignment_det.utils.boxes.iou_targets` returns for
            ``pred_boxes[positive_mask]``. Always detached here as well.
        positive_mask: bool, same shape as ``obj_logits`` (Detectron2:
            ``(gt_labels >= 0) & (gt_labels != num_classes)``).
        normalizer: positive number the sum is divided by (the meta-architecture passes
            Detectron2's EMA of the number of positive anchors, already ``>= 1``).
        valid_mask: bool, same shape; False for anchors the matcher ignores
            (Detectron2: ``gt_labels >= 0``). Required when ``neg_weight > 0``: background =
            ``valid_mask & ~positive_mask``. ``positive_mask`` must lie inside it (it does
            in Detectron2), it is not re-masked so compact targets stay aligned.
        neg_weight: weight of background anchors with target 0 (``CELoss_w``; paper 1e-4).
            0 (default) = positives only, as in the paper's main results.
        reduction: "sum" -> scalar; "none" -> per-anchor loss in the shape of
            ``obj_logits`` (already divided by ``normalizer``, 0 where nothing contributes).

    Returns:
        The loss. With no positives (and ``neg_weight = 0``) it is an exact 0 that is still
        connected to ``obj_logits`` (its gradient is all zeros, never NaN), so DDP sees the
        confidence head used on every rank.
    """
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    if not isinstance(neg_weight, (int, float)) or not neg_weight >= 0:
        raise ValueError(f"neg_weight must be a number >= 0, got {neg_weight!r}")
    if isinstance(normalizer, (int, float)) and not normalizer > 0:
        raise ValueError(f"normalizer must be > 0 (Detectron2 passes max(EMA of #positives, 1)), got {normalizer!r}")

    if obj_logits.dim() == positive_mask.dim() + 1 and obj_logits.shape[-1] == 1:
        obj_logits = obj_logits.squeeze(-1)
        if targets.dim() == positive_mask.dim() + 1 and targets.shape[-1] == 1:
            targets = targets.squeeze(-1)
    _check_mask("positive_mask", positive_mask, obj_logits)
    pos = positive_mask
    neg = None
    if valid_mask is not None:
        _check_mask("valid_mask", valid_mask, obj_logits)
        neg = valid_mask & ~positive_mask
    if neg_weight > 0 and neg is None:
        raise ValueError(
            "neg_weight > 0 (CELoss_w) needs valid_mask to tell background anchors from ignored ones; "
            "pass valid_mask=(gt_labels >= 0)"
        )

    pos_logits = obj_logits[pos]
    if targets.shape == obj_logits.shape:
        pos_targets = targets[pos]
    elif targets.dim() == 1:
        pos_targets = targets  # compact: one per positive, count checked below
    else:
        raise ValueError(
            f"targets must have the shape of obj_logits {tuple(obj_logits.shape)} (dense) or be 1-D with one "
            f"value per positive (compact); got {tuple(targets.shape)}"
        )
    if pos_targets.shape != pos_logits.shape:
        raise ValueError(
            f"compact targets hold {pos_targets.numel()} values but positive_mask selects {pos_logits.numel()}"
        )
    pos_loss = F.binary_cross_entropy_with_logits(
        pos_logits, pos_targets.detach().to(pos_logits.dtype), reduction="none"
    )
    neg_loss = None
    if neg_weight > 0:
        neg_logits = obj_logits[neg]
        neg_loss = neg_weight * F.binary_cross_entropy_with_logits(
            neg_logits, torch.zeros_like(neg_logits), reduction="none"
        )

    if reduction == "sum":
        # An empty selection sums to an exact 0 whose gradient is zeros: the "0 * obj.sum()"
        # of docs/methods.md#retinanet-conf-edge-cases without multiplying (so inf logits elsewhere cannot make NaN).
        total = pos_loss.sum()
        if neg_loss is not None:
            total = total + neg_loss.sum()
        return total / normalizer

    out = torch.zeros(obj_logits.shape, dtype=pos_loss.dtype, device=obj_logits.device)
    out = out.masked_scatter(pos, pos_loss)  # fills in row-major order, same as boolean indexing
    if neg_loss is not None:
        out = out.masked_scatter(neg, neg_loss)
    return out / normalizer


def _check_mask(name: str, mask: torch.Tensor, like: torch.Tensor) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
    if mask.shape != like.shape:
        raise ValueError(f"{name} must have the shape of obj_logits {tuple(like.shape)}, got {tuple(mask.shape)}")
