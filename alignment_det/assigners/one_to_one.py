"""DATE one-to-one (o2o) assignment: POTO quality + Hungarian matching, on plain tensors.

docs/methods.md#date-one-to-one-matching. Per image, with ``R`` locations and ``G`` ground truths::

    Q[r, g] = p_r[c_g] ** (1 - alpha) * IoU(box_r, B_g) ** alpha * in_center[r, g]
    (row, gt) = linear_sum_assignment(Q, maximize=True)

``in_center[r, g]`` is true when location ``r`` lies strictly inside ``[centre_g ± radius·stride_r]``
clipped to ``B_g`` (every level, no scale-range restriction). ``Q`` is computed in fp32 without
gradient; the Hungarian step runs on CPU (scipy) over the candidate rows only.

Pure tensor layer: torch, numpy, scipy and ``alignment_det.utils`` only.
"""
from typing import Optional, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from alignment_det.utils.boxes import (
    box_centers,
    box_xyxy_to_cxcywh,
    pairwise_giou,
    pairwise_iou,
    point_box_distances,
)

__all__ = [
    "center_prior_mask",
    "empty_center_fallback_mask",
    "poto_quality",
    "hungarian_match",
    "one_to_one_assign",
    "onenet_cost_assign",
]

# A level "fits" a box when half its longest side is at most this many strides: the upper bounds of
# mmdet's FCOS regress ranges (64, 128, 256, 512 for strides 8..64) are 8 strides.
_FIT_STRIDES = 8.0
# Bonus added to candidate entries in the Hungarian matrix so that, among assignments of equal quality,
# the one using more candidate (centre / fallback) locations wins. Moves the optimum total by at most
# G * _TIE_BREAK, far below fp32 resolution of Q.
_TIE_BREAK = 1e-10


def _empty_match(device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    e = torch.empty(0, dtype=torch.long, device=device)
    return e, e.clone()


def center_prior_mask(
    locations: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, radius: float = 1.5
) -> torch.Tensor:
    """POTO centre prior: which locations lie strictly inside each GT's centre region.

    Args:
        locations: (R, 2) location centres (x, y) in input pixels.
        strides: (R,) stride of the level each location belongs to.
        gt_boxes: (G, 4) XYXY.
        radius: half-size of the centre region in strides (1.5 in DATE / DeFCN).

    Returns:
        (R, G) bool: ``x0' < x < x1'`` and ``y0' < y < y1'`` where
        ``x0' = max(cx - radius·s, x0)``, ``x1' = min(cx + radius·s, x1)`` (same in y).
    """
    R, G = locations.shape[0], gt_boxes.shape[0]
    if R == 0 or G == 0:
        return torch.zeros((R, G), dtype=torch.bool, device=locations.device)
    boxes = gt_boxes.float()
    c = box_centers(boxes)  # (G, 2)
    r = strides.float()[:, None] * radius  # (R, 1)
    x, y = locations[:, 0, None].float(), locations[:, 1, None].float()
    x0 = torch.max(c[None, :, 0] - r, boxes[None, :, 0])
    y0 = torch.max(c[None, :, 1] - r, boxes[None, :, 1])
    x1 = torch.min(c[None, :, 0] + r, boxes[None, :, 2])
    y1 = torch.min(c[None, :, 1] + r, boxes[None, :, 3])
    return (x > x0) & (x < x1) & (y > y0) & (y < y1)


def empty_center_fallback_mask(
    candidate_mask: torch.Tensor, locations: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor
) -> torch.Tensor:
    """Give every GT with an empty candidate column a replacement column (docs/methods.md#date-choices).

    DEVIATION (flagged, ``model.empty_center_fallback``, docs/methods.md#date-choices): the DATE code leaves such a column at zero
    and Hungarian then hands the GT an arbitrary location. Here, for each GT whose column is empty:

    1. the locations strictly inside the GT box (any level) become its candidates;
    2. if there are none, the single location nearest to the box centre on the level whose stride
       best fits the box: the finest level with ``max(w, h) / 2 <= 8 · stride`` (the upper bounds of
       mmdet's FCOS regress ranges), the coarsest level when no level satisfies it.

    Args:
        candidate_mask: (R, G) bool, usually :func:`center_prior_mask`.
        locations: (R, 2); strides: (R,); gt_boxes: (G, 4) XYXY.

    Returns:
        (R, G) bool; columns that were non-empty are unchanged, every column is non-empty when R > 0.
    """
    R = locations.shape[0]
    empty = ~candidate_mask.any(dim=0)
    if R == 0 or not bool(empty.any()):
        return candidate_mask
    gt_idx = torch.nonzero(empty).squeeze(1)  # (F,)
    boxes = gt_boxes[gt_idx].float()
    inside = point_box_distances(locations.float(), boxes).min(dim=-1).values > 0  # (R, F)
    still = ~inside.any(dim=0)
    if bool(still.any()):
        sub = torch.nonzero(still).squeeze(1)  # (S,)
        b = boxes[sub]
        half_long = torch.max(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clamp(min=0) / 2  # (S,)
        level_strides = torch.unique(strides.float())  # sorted ascending
        fits = half_long[:, None] <= _FIT_STRIDES * level_strides[None, :]  # (S, L)
        first_fit = torch.where(
            fits.any(dim=1), fits.float().argmax(dim=1), torch.full_like(sub, level_strides.numel() - 1)
        )
        best_stride = level_strides[first_fit]  # (S,)
        d2 = ((locations.float()[:, None, :] - box_centers(b)[None, :, :]) ** 2).sum(dim=-1)  # (R, S)
        d2 = torch.where(strides.float()[:, None] == best_stride[None, :], d2, torch.full_like(d2, float("inf")))
        nearest = d2.argmin(dim=0)  # (S,)
        inside[nearest, sub] = True
    out = candidate_mask.clone()
    out[:, gt_idx] = inside
    return out


@torch.no_grad()
def poto_quality(
    cls_prob_for_gt_class: torch.Tensor,
    iou: torch.Tensor,
    alpha: float = 0.8,
    center_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """POTO matching quality ``p^(1-alpha) · IoU^alpha · mask`` (fp32, no grad).

    Args:
        cls_prob_for_gt_class: (R, G) probability of GT g's class at location r (already a probability:
            ``σ(cls)``, or ``σ(cls)·σ(f)`` with 3D max filtering).
        iou: (R, G) plain IoU of predicted box r with GT g.
        alpha: geometric weight (0.8).
        center_mask: optional (R, G) bool; entries outside it are 0.

    Returns:
        (R, G) float32 in [0, 1].
    """
    p = cls_prob_for_gt_class.detach().float().clamp(0.0, 1.0)
    q = p.pow(1.0 - alpha) * iou.detach().float().clamp(0.0, 1.0).pow(alpha)
    if center_mask is not None:
        q = q * center_mask.to(q.dtype)
    return q


@torch.no_grad()
def hungarian_match(
    quality: torch.Tensor, candidate_mask: Optional[torch.Tensor] = None, tie_break: float = _TIE_BREAK
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Maximum-quality one-to-one matching, solved on the candidate rows only (docs/methods.md#date-one-to-one-matching).

    A row that is zero for every GT adds nothing to any assignment, so solving
    ``linear_sum_assignment(Q[rows], maximize=True)`` on ``rows`` = the union of candidate rows (rows
    with a nonzero entry, or with a True entry of ``candidate_mask``) and mapping the row indices back
    gives the same optimum total as the full (R, G) problem, in O(C·G²) instead of O(R·G²).

    Only candidate rows are matched: when fewer than G candidate rows exist the surplus GTs stay
    unmatched instead of getting an arbitrary zero-quality location (total quality unchanged).
    With ``candidate_mask``, ``tie_break`` is added to its True entries so that equal-quality
    solutions prefer candidate locations (e.g. a fallback location whose quality is 0).

    Args:
        quality: (R, G) non-negative.
        candidate_mask: optional (R, G) bool.

    Returns:
        ``(location_idx, gt_idx)``: two (M,) int64 tensors on ``quality.device``, M <= min(R, G), no
        location and no GT repeated, sorted by location index.
    """
    R, G = quality.shape
    device = quality.device
    if R == 0 or G == 0:  # no scipy call (and no GPU->CPU copy) for an image without GT
        return _empty_match(device)
    row_ok = candidate_mask.any(dim=1) if candidate_mask is not None else (quality > 0).any(dim=1)
    rows = torch.nonzero(row_ok).squeeze(1)
    if rows.numel() == 0:
        return _empty_match(device)
    sub = quality[rows].double()
    if candidate_mask is not None and tie_break > 0:
        sub = sub + tie_break * candidate_mask[rows].double()
    sub_np = sub.cpu().numpy()
    if not np.isfinite(sub_np).all():
        raise ValueError(
            "hungarian_match: the quality matrix contains NaN/inf; the one-to-one predictions "
            "(class scores or boxes) are not finite, so training has diverged (lower the LR or check the data)"
        )
    r, c = linear_sum_assignment(sub_np, maximize=True)
    loc = rows[torch.as_tensor(r, dtype=torch.long, device=device)]
    gt = torch.as_tensor(c, dtype=torch.long, device=device)
    return loc, gt


@torch.no_grad()
def one_to_one_assign(
    cls_probs: torch.Tensor,
    pred_boxes: torch.Tensor,
    locations: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    *,
    alpha: float = 0.8,
    center_radius: float = 1.5,
    empty_center_fallback: bool = True,
    gt_chunk_size: int = 512,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """DATE o2o assignment for one image: POTO quality, centre prior, Hungarian.

    Args:
        cls_probs: (R, K) o2o class probabilities (``σ(cls)``, or ``σ(cls)·σ(f)`` with 3DMF).
        pred_boxes: (R, 4) XYXY decoded o2o boxes in input pixels.
        locations: (R, 2) location centres; strides: (R,) their level strides.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,) int64 in [0, K).
        alpha: POTO alpha (0.8); center_radius: centre prior radius in strides (1.5).
        empty_center_fallback: apply :func:`empty_center_fallback_mask` (deviation, docs/methods.md#date-choices; default on).
        gt_chunk_size: GTs per chunk when building the (R, G) quality, to bound the temporaries.

    Returns:
        ``(location_idx, gt_idx)`` int64 (M,) each, M <= min(R, G); see :func:`hungarian_match`.
    """
    R, G = locations.shape[0], gt_boxes.shape[0]
    if R == 0 or G == 0:
        return _empty_match(locations.device)
    mask = center_prior_mask(locations, strides, gt_boxes, center_radius)
    if empty_center_fallback:
        mask = empty_center_fallback_mask(mask, locations, strides, gt_boxes)
    probs = cls_probs.detach().float()
    boxes = pred_boxes.detach().float()
    gts = gt_boxes.float()
    quality = torch.empty((R, G), dtype=torch.float32, device=locations.device)
    for start in range(0, G, gt_chunk_size):  # chunks of GTs, not single boxes
        sl = slice(start, min(start + gt_chunk_size, G))
        quality[:, sl] = poto_quality(probs[:, gt_classes[sl]], pairwise_iou(boxes, gts[sl]), alpha, mask[:, sl])
    return hungarian_match(quality, mask)


@torch.no_grad()
def onenet_cost_assign(
    cls_probs: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    image_size: Tuple[int, int],
    *,
    weights: Tuple[float, float, float] = (2.0, 5.0, 2.0),
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    eps: float = 1e-12,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """OneNet / mmdet ``HungarianAssigner`` matching for one image (DATE's CrowdHuman o2o matcher, docs/methods.md#date-defaults).

    The alternative to :func:`one_to_one_assign` (POTO) that DATE's CrowdHuman configs use.

    ``cost[r, g] = w_cls·(FL⁺ - FL⁻)(p_r[c_g]) + w_l1·|cxcywh(box_r/S) - cxcywh(B_g/S)|_1
    - w_giou·GIoU(box_r, B_g)``, ``S = (W, H, W, H)`` of the unpadded image; minimised by Hungarian
    over every location (no centre prior).

    Args:
        cls_probs: (R, K) probabilities; pred_boxes: (R, 4) XYXY pixels.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,) int64; image_size: (H, W).

    Returns:
        ``(location_idx, gt_idx)`` int64 (M,), M = min(R, G).
    """
    device = cls_probs.device
    R, G = cls_probs.shape[0], gt_boxes.shape[0]
    if R == 0 or G == 0:
        e = torch.empty(0, dtype=torch.long, device=device)
        return e, e.clone()
    w_cls, w_l1, w_giou = weights
    p = cls_probs.detach().float()[:, gt_classes]  # (R, G)
    neg = -(1 - p + eps).log() * (1 - focal_alpha) * p.pow(focal_gamma)
    pos = -(p + eps).log() * focal_alpha * (1 - p).pow(focal_gamma)
    h, w = float(image_size[0]), float(image_size[1])
    scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
    boxes, gts = pred_boxes.detach().float(), gt_boxes.float()
    l1 = torch.cdist(box_xyxy_to_cxcywh(boxes / scale), box_xyxy_to_cxcywh(gts / scale), p=1)
    cost = w_cls * (pos - neg) + w_l1 * l1 - w_giou * pairwise_giou(boxes, gts)
    cost_np = cost.cpu().numpy()
    r, c = linear_sum_assignment(cost_np)
    return (
        torch.as_tensor(r, dtype=torch.long, device=device),
        torch.as_tensor(c, dtype=torch.long, device=device),
    )
