"""DATE losses on plain tensors: the one-to-one (OneNet-weighted) and FCOS one-to-many terms.

docs/methods.md#date-losses. Every function accepts images without ground truth (finite losses
that still backpropagate: the classification term always covers every location) and all-reduces its
normalisers across ranks (:func:`alignment_det.utils.comm.all_reduce_mean`, a no-op in one process),
so every rank must call it on every step.
"""
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from alignment_det.losses.focal import sigmoid_focal_loss
from alignment_det.utils.boxes import aligned_giou, aligned_iou, box_xyxy_to_cxcywh
from alignment_det.utils.comm import all_reduce_mean

__all__ = ["o2o_losses", "fcos_o2m_losses", "ltrb_to_boxes"]

ImageSizes = Union[torch.Tensor, Sequence[Tuple[int, int]]]


def ltrb_to_boxes(locations: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """(..., 2) locations and (..., 4) distances -> (..., 4) XYXY ``(x - l, y - t, x + r, y + b)``."""
    x, y = locations[..., 0], locations[..., 1]
    return torch.stack((x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]), dim=-1)


def o2o_losses(
    cls_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: Sequence[torch.Tensor],
    gt_classes: Sequence[torch.Tensor],
    matches: Sequence[Tuple[torch.Tensor, torch.Tensor]],
    image_sizes: ImageSizes,
    *,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    loss_weights: Tuple[float, float, float] = (2.0, 5.0, 2.0),
) -> Dict[str, torch.Tensor]:
    """One-to-one losses with OneNet weights (cls 2, L1 5, GIoU 2).

    ``n_pos = max(all_reduce_mean(#matched pairs on this rank), 1)``;

    * ``loss_o2o_cls  = w_cls  · Σ_{r,k} FL(cls[r,k], onehot[r,k]) / n_pos`` over all N·R·K elements,
      one-hot only at matched locations (class of the matched GT);
    * ``loss_o2o_l1   = w_l1   · Σ_pairs Σ_coords |cxcywh(box/S) - cxcywh(gt/S)| / n_pos`` with
      ``S = (W, H, W, H)`` of the **unpadded** image;
    * ``loss_o2o_giou = w_giou · Σ_pairs (1 - GIoU(box, gt)) / n_pos`` (pixels).

    Args:
        cls_logits: (N, R, K) o2o logits (with 3DMF, the logit of ``σ(cls)·σ(f)``; see
            :func:`alignment_det.layers.max_filter_3d.fuse_filter_logits`).
        pred_boxes: (N, R, 4) XYXY decoded o2o boxes in input pixels.
        gt_boxes / gt_classes: per image (G_i, 4) XYXY and (G_i,) int64.
        matches: per image ``(location_idx, gt_idx)`` from
            :func:`alignment_det.assigners.one_to_one.one_to_one_assign`.
        image_sizes: per image (H, W) of the unpadded image (``ImageList.image_sizes``), or an (N, 2)
            tensor in that order.

    Returns:
        dict with ``loss_o2o_cls``, ``loss_o2o_l1``, ``loss_o2o_giou`` (fp32 scalars).
    """
    w_cls, w_l1, w_giou = loss_weights
    N, R, K = cls_logits.shape
    device = cls_logits.device
    if len(gt_boxes) != N or len(gt_classes) != N or len(matches) != N or len(image_sizes) != N:
        raise ValueError(
            f"o2o_losses: got {N} images of predictions but {len(gt_boxes)} gt_boxes, {len(gt_classes)} "
            f"gt_classes, {len(matches)} matches and {len(image_sizes)} image_sizes; pass one entry per image"
        )
    cls_target = torch.zeros((N, R, K), dtype=torch.float32, device=device)
    preds, targets, scales = [], [], []
    for i in range(N):  # loop over images; everything inside is vectorised
        loc, g = matches[i]
        loc, g = loc.to(device=device, dtype=torch.long), g.to(device=device, dtype=torch.long)
        cls_target[i, loc, gt_classes[i].to(device)[g].long()] = 1.0
        preds.append(pred_boxes[i, loc].float())
        targets.append(gt_boxes[i].to(device)[g].float())
        h, w = (float(v) for v in image_sizes[i])
        scales.append(torch.tensor([w, h, w, h], dtype=torch.float32, device=device).expand(loc.numel(), 4))
    pred, target, scale = torch.cat(preds), torch.cat(targets), torch.cat(scales)

    num_matched = torch.tensor(float(pred.shape[0]), device=device)
    n_pos = all_reduce_mean(num_matched).clamp(min=1.0)

    loss_cls = sigmoid_focal_loss(cls_logits.float(), cls_target, focal_alpha, focal_gamma, reduction="sum")
    l1 = (box_xyxy_to_cxcywh(pred / scale) - box_xyxy_to_cxcywh(target / scale)).abs().sum()
    giou = (1.0 - aligned_giou(pred, target)).sum()
    return {
        "loss_o2o_cls": loss_cls / n_pos * w_cls,
        "loss_o2o_l1": l1 / n_pos * w_l1,
        "loss_o2o_giou": giou / n_pos * w_giou,
    }


def fcos_o2m_losses(
    cls_logits: torch.Tensor,
    ltrb_preds: torch.Tensor,
    ctr_logits: torch.Tensor,
    labels: torch.Tensor,
    ltrb_targets: torch.Tensor,
    ctr_targets: torch.Tensor,
    *,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    loss_weights: Tuple[float, float, float] = (1.0, 1.0, 1.0),
    iou_eps: float = 1e-6,
) -> Dict[str, torch.Tensor]:
    """FCOS o2m losses with mmdet ``FCOSHead.loss`` normalisers (DATE-F, λ_o2m = 1).

    With ``n = max(all_reduce_mean(#pos), 1)`` and ``D = max(all_reduce_mean(Σ_pos ctr*), 1e-6)``:

    * ``loss_o2m_cls = w0 · Σ FL(cls, onehot(labels)) / n`` over all locations (label K = background);
    * ``loss_o2m_iou = w1 · Σ_pos ctr* · (-ln max(IoU(pred, target), eps)) / D``, boxes decoded from
      ltrb around the same point (IoU is translation-invariant, so around the origin);
    * ``loss_o2m_ctr = w2 · Σ_pos BCE(ctr_logit, ctr*) / n``.

    Args (any common leading shape, e.g. (N, R) or flattened (N·R,)):
        cls_logits: (..., K); ltrb_preds: (..., 4) positive pixel distances (``exp(scale·x)``);
        ctr_logits: (...,) centerness logits; labels: (...,) int64 in [0, K];
        ltrb_targets: (..., 4); ctr_targets: (...,) from
        :func:`alignment_det.assigners.fcos_targets.fcos_targets`.

    Returns:
        dict with ``loss_o2m_cls``, ``loss_o2m_iou``, ``loss_o2m_ctr``.
    """
    w_cls, w_iou, w_ctr = loss_weights
    K = cls_logits.shape[-1]
    logits = cls_logits.reshape(-1, K).float()
    labels = labels.reshape(-1).long()
    ltrb_p = ltrb_preds.reshape(-1, 4).float()
    ltrb_t = ltrb_targets.reshape(-1, 4).float()
    ctr_p = ctr_logits.reshape(-1).float()
    ctr_t = ctr_targets.reshape(-1).float()

    pos = torch.nonzero((labels >= 0) & (labels < K)).squeeze(1)
    n = all_reduce_mean(torch.tensor(float(pos.numel()), device=logits.device)).clamp(min=1.0)

    onehot = F.one_hot(labels, K + 1)[:, :K].to(logits.dtype)  # background row K is dropped
    loss_cls = sigmoid_focal_loss(logits, onehot, focal_alpha, focal_gamma, reduction="sum") / n

    pos_ctr_t = ctr_t[pos]
    denom = all_reduce_mean(pos_ctr_t.sum().detach()).clamp(min=1e-6)
    origin = ltrb_p.new_zeros((pos.numel(), 2))
    iou = aligned_iou(ltrb_to_boxes(origin, ltrb_p[pos]), ltrb_to_boxes(origin, ltrb_t[pos]))
    loss_iou = (-iou.clamp(min=iou_eps).log() * pos_ctr_t).sum() / denom
    loss_ctr = F.binary_cross_entropy_with_logits(ctr_p[pos], pos_ctr_t, reduction="sum") / n
    return {
        "loss_o2m_cls": loss_cls * w_cls,
        "loss_o2m_iou": loss_iou * w_iou,
        "loss_o2m_ctr": loss_ctr * w_ctr,
    }
