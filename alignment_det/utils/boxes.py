"""Box geometry on plain tensors, XYXY in pixels.

Torch-only twins of ``detectron2.structures.pairwise_iou`` / ``Box2BoxTransform`` /
fvcore's GIoU so the pure tensor layer runs (and is unit-tested) without
Detectron2 or torchvision. The Detectron2 layer may call either; tests check they
agree.
"""
import math
from typing import Sequence

import torch

# Same clamp Detectron2 uses for dw/dh before exp(), so decoding never overflows.
_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY -> (N,) area; negative extents count as zero."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY -> (N, 2) centre (x, y)."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _pairwise_inter_union(boxes1: torch.Tensor, boxes2: torch.Tensor):
    """(N, 4), (M, 4) XYXY -> intersection and union areas, (N, M) each."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter


def _safe_ratio(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """inter / union, 0 where the union is empty."""
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), inter.new_zeros(()))


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU between every pair: (N, 4), (M, 4) XYXY -> (N, M). Empty boxes give 0."""
    return _safe_ratio(*_pairwise_inter_union(boxes1, boxes2))


def pairwise_giou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU between every pair: (N, 4), (M, 4) XYXY -> (N, M) in [-1, 1].

    ``IoU - (C - U) / C`` with ``C`` the smallest enclosing box's area, as
    ``torchvision.ops.generalized_box_iou``; pairs with an empty enclosing box give their IoU (0)
    instead of NaN.
    """
    inter, union = _pairwise_inter_union(boxes1, boxes2)
    iou = _safe_ratio(inter, union)
    enc_lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    enc_rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    enc_wh = (enc_rb - enc_lt).clamp(min=0)
    enc = enc_wh[..., 0] * enc_wh[..., 1]
    return torch.where(enc > 0, iou - (enc - union) / enc.clamp(min=torch.finfo(enc.dtype).tiny), iou)


def aligned_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of row i with row i: (N, 4), (N, 4) XYXY -> (N,). Empty boxes give 0."""
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return _safe_ratio(inter, box_area(boxes1) + box_area(boxes2) - inter)


def aligned_giou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Generalized IoU of row i with row i: (N, 4), (N, 4) -> (N,) in [-1, 1].

    Same formula as ``fvcore.nn.giou_loss`` (which returns ``1 - giou``).
    """
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    iou = inter / (union + eps)
    enc_wh = (torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    enc_area = enc_wh[:, 0] * enc_wh[:, 1]
    return iou - (enc_area - union) / (enc_area + eps)


def aligned_diou_penalty(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """DIoU's distance penalty of row i with row i: (N, 4), (N, 4) XYXY -> (N,) in [0, 1).

    ``rho^2 / c^2``: squared distance between the two centres over the squared diagonal of the
    smallest box enclosing both (Zheng et al., DIoU; the term ``detectron2.layers.diou_loss``
    adds to ``1 - IoU``). Two boxes with the same centre give 0.
    """
    d = box_centers(boxes1) - box_centers(boxes2)
    rho2 = d[:, 0] ** 2 + d[:, 1] ** 2
    enc_wh = torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])
    c2 = enc_wh[:, 0] ** 2 + enc_wh[:, 1] ** 2
    return rho2 / (c2 + eps)


def encode_boxes(
    anchors: torch.Tensor, targets: torch.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> torch.Tensor:
    """Deltas (dx, dy, dw, dh) that turn ``anchors`` into ``targets``; (N, 4), (N, 4) -> (N, 4).

    Identical to ``detectron2.modeling.Box2BoxTransform(weights).get_deltas``.
    """
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    tw, th = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    tx, ty = targets[:, 0] + 0.5 * tw, targets[:, 1] + 0.5 * th
    return torch.stack(
        (wx * (tx - ax) / aw, wy * (ty - ay) / ah, ww * torch.log(tw / aw), wh * torch.log(th / ah)), dim=1
    )


def decode_boxes(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = _DEFAULT_SCALE_CLAMP,
) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: (N, 4) deltas on (N, 4) anchors -> (N, 4) XYXY.

    Identical to ``Box2BoxTransform(weights).apply_deltas`` for one box per anchor.
    """
    deltas = deltas.float()
    anchors = anchors.to(deltas.dtype)
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = (deltas[:, 2] / ww).clamp(max=scale_clamp)
    dh = (deltas[:, 3] / wh).clamp(max=scale_clamp)
    cx, cy = dx * aw + ax, dy * ah + ay
    w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=1)


def min_side(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY -> (N,) the shorter of width and height (negative for inverted boxes)."""
    return torch.min(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) XYXY -> (..., 4) (centre x, centre y, width, height)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def point_box_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distances from every point to the four sides of every box, FCOS ``ltrb`` order.

    (R, 2) points (x, y), (G, 4) XYXY -> (R, G, 4) = (x - x0, y - y0, x1 - x, y1 - y).
    All four are > 0 exactly when the point lies strictly inside the box.
    """
    x, y = points[:, 0, None], points[:, 1, None]
    return torch.stack((x - boxes[None, :, 0], y - boxes[None, :, 1], boxes[None, :, 2] - x, boxes[None, :, 3] - y), dim=-1)


def ltrb_to_boxes(locations: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Decode point distances: (..., 2) locations (x, y) and (..., 4) ltrb -> (..., 4) XYXY
    ``(x - l, y - t, x + r, y + b)`` (the inverse of :func:`point_box_distances` for one box)."""
    x, y = locations[..., 0], locations[..., 1]
    return torch.stack((x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]), dim=-1)


def iou_targets(pred_boxes: torch.Tensor, matched_gt_boxes: torch.Tensor) -> torch.Tensor:
    """IoU of each predicted box with its matched ground truth, as a detached target.

    Args:
        pred_boxes: (P, 4) XYXY, the decoded predictions of the positive anchors
            (any leading shape ``(..., 4)`` is accepted).
        matched_gt_boxes: same shape, the ground-truth box each anchor is matched to.

    Returns:
        (P,) (or ``(...)``) IoU in [0, 1], computed under ``no_grad`` so it carries no
        gradient even when ``pred_boxes`` requires grad. The official code does not
        detach; a gradient into the regression branch through a BCE *target* is
        unintended (docs/methods.md#retinanet-conf-object-confidence). Degenerate boxes (zero or negative
        width/height) give 0, and so does a NaN prediction.
    """
    if pred_boxes.shape != matched_gt_boxes.shape or pred_boxes.shape[-1:] != (4,):
        raise ValueError(
            "iou_targets expects pred_boxes and matched_gt_boxes of the same shape (..., 4), got "
            f"{tuple(pred_boxes.shape)} and {tuple(matched_gt_boxes.shape)}"
        )
    with torch.no_grad():
        lead = pred_boxes.shape[:-1]
        pred = pred_boxes.detach().reshape(-1, 4).float()
        gt = matched_gt_boxes.detach().reshape(-1, 4).to(pred.dtype)
        iou = aligned_iou(pred, gt)
        # aligned_iou already maps a NaN/inf union (diverged regression) to 0; the clamp only
        # guards the [0, 1] contract against rounding.
        iou = iou.clamp_(0.0, 1.0)
        return iou.reshape(lead)
