"""DATE losses on plain tensors: the one-to-one (OneNet-weighted) term and the two one-to-many
terms, FCOS's (DATE-F) and RetinaNet's (DATE-R).

docs/methods.md#date-losses. Every function accepts images without ground truth (finite losses
that still backpropagate: the classification term always covers every location) and all-reduces its
normalisers across ranks (:func:`alignment_det.utils.comm.positive_normalizer`, a no-op in one process),
so every rank must call it on every step.
"""
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from alignment_det.losses.focal import focal_targets, sigmoid_focal_loss, sigmoid_focal_loss_jit
from alignment_det.utils.boxes import aligned_giou, aligned_iou, box_xyxy_to_cxcywh, encode_boxes, ltrb_to_boxes
from alignment_det.utils.comm import positive_normalizer

__all__ = ["o2o_losses", "fcos_o2m_losses", "retinanet_o2m_losses", "O2M_BOX_LOSSES"]

# The FCOS one-to-many box term: "iou" is DATE's (mmdet FCOS: -ln IoU weighted by the centerness
# target); "giou" is Detectron2 FCOS's (1 - GIoU, unweighted), a control that is not in the paper.
O2M_BOX_LOSSES = ("iou", "giou")

ImageSizes = Union[torch.Tensor, Sequence[Tuple[int, int]]]


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

    n_pos = positive_normalizer(pred.shape[0], device)

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
    box_loss: str = "iou",
) -> Dict[str, torch.Tensor]:
    """FCOS o2m losses with mmdet ``FCOSHead.loss`` normalisers (DATE-F, λ_o2m = 1).

    With ``n = max(all_reduce_mean(#pos), 1)`` and ``D = max(all_reduce_mean(Σ_pos ctr*), 1e-6)``:

    * ``loss_o2m_cls = w0 · Σ FL(cls, onehot(labels)) / n`` over all locations (label K = background);
    * ``loss_o2m_iou = w1 · Σ_pos ctr* · (-ln max(IoU(pred, target), eps)) / D``, boxes decoded from
      ltrb around the same point (IoU is translation-invariant, so around the origin);
    * ``loss_o2m_ctr = w2 · Σ_pos BCE(ctr_logit, ctr*) / n``.

    ``box_loss="giou"`` (a control, not DATE) replaces the box term with Detectron2 ``FCOS``'s:
    ``loss_o2m_giou = w1 · Σ_pos (1 - GIoU(pred, target)) / n``, unweighted by centerness.

    Args (any common leading shape, e.g. (N, R) or flattened (N·R,)):
        cls_logits: (..., K); ltrb_preds: (..., 4) non-negative pixel distances (``exp(scale·x)``, or
            ``relu(scale·x)·stride`` with the head's ``o2m_norm_on_bbox``);
        ctr_logits: (...,) centerness logits; labels: (...,) int64 in [0, K];
        ltrb_targets: (..., 4); ctr_targets: (...,) from
        :func:`alignment_det.assigners.fcos_targets.fcos_targets`.
        box_loss: "iou" (DATE, mmdet) or "giou" (Detectron2's FCOS form).

    Returns:
        dict with ``loss_o2m_cls``, ``loss_o2m_iou`` (``loss_o2m_giou``), ``loss_o2m_ctr``.
    """
    if box_loss not in O2M_BOX_LOSSES:
        raise ValueError(f"fcos_o2m_losses: box_loss must be one of {O2M_BOX_LOSSES}, got {box_loss!r}")
    w_cls, w_box, w_ctr = loss_weights
    K = cls_logits.shape[-1]
    logits = cls_logits.reshape(-1, K).float()
    labels = labels.reshape(-1).long()
    ltrb_p = ltrb_preds.reshape(-1, 4).float()
    ltrb_t = ltrb_targets.reshape(-1, 4).float()
    ctr_p = ctr_logits.reshape(-1).float()
    ctr_t = ctr_targets.reshape(-1).float()

    pos = torch.nonzero((labels >= 0) & (labels < K)).squeeze(1)
    n = positive_normalizer(pos.numel(), logits.device)

    onehot = focal_targets(labels, K, logits.dtype)
    loss_cls = sigmoid_focal_loss(logits, onehot, focal_alpha, focal_gamma, reduction="sum") / n

    pos_ctr_t = ctr_t[pos]
    origin = ltrb_p.new_zeros((pos.numel(), 2))
    pred_boxes, target_boxes = ltrb_to_boxes(origin, ltrb_p[pos]), ltrb_to_boxes(origin, ltrb_t[pos])
    if box_loss == "iou":
        denom = positive_normalizer(pos_ctr_t.sum(), floor=1e-6)
        iou = aligned_iou(pred_boxes, target_boxes)
        box_name, loss_box = "loss_o2m_iou", (-iou.clamp(min=iou_eps).log() * pos_ctr_t).sum() / denom
    else:
        box_name, loss_box = "loss_o2m_giou", (1.0 - aligned_giou(pred_boxes, target_boxes)).sum() / n
    loss_ctr = F.binary_cross_entropy_with_logits(ctr_p[pos], pos_ctr_t, reduction="sum") / n
    return {
        "loss_o2m_cls": loss_cls * w_cls,
        box_name: loss_box * w_box,
        "loss_o2m_ctr": loss_ctr * w_ctr,
    }


def retinanet_o2m_losses(
    cls_logits: torch.Tensor,
    deltas: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor,
    matched_boxes: torch.Tensor,
    *,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    loss_weights: Tuple[float, float] = (2.0, 2.0),
    box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> Dict[str, torch.Tensor]:
    """RetinaNet o2m losses (DATE-R): focal and L1 on the anchor deltas, mmdet ``RetinaHead.loss``.

    With ``n = max(all_reduce_mean(#pos), 1)`` (mmdet divides by the per-GPU #pos; identical in one
    process) and ``δ* = encode(anchor, gt)`` (``Box2BoxTransform(box_weights).get_deltas``):

    * ``loss_o2m_cls     = w0 · Σ_{r valid, k} FL(cls[r,k], onehot[r,k]) / n`` (ignored anchors excluded);
    * ``loss_o2m_box_reg = w1 · Σ_{r pos} |δ_r - δ*_r|_1 / n``.

    Args:
        cls_logits: (N, R, K); deltas: (N, R, 4) predicted anchor deltas;
        labels: (N, R) int64 in [-1, K] (-1 ignored, K background), e.g. Detectron2's
            ``RetinaNet.label_anchors``; anchors: (R, 4) XYXY; matched_boxes: (N, R, 4) the GT box of
            each anchor (read at positives only).

    Returns:
        dict with ``loss_o2m_cls``, ``loss_o2m_box_reg``.
    """
    K = cls_logits.shape[-1]
    valid = labels >= 0
    pos = valid & (labels != K)
    pos_img, pos_idx = pos.nonzero(as_tuple=True)
    n = positive_normalizer(pos_img.numel(), cls_logits.device)
    target = focal_targets(labels, K, cls_logits.dtype)
    loss_cls = sigmoid_focal_loss_jit(cls_logits[valid], target[valid], focal_alpha, focal_gamma, "sum")
    target_deltas = encode_boxes(anchors[pos_idx], matched_boxes[pos_img, pos_idx], box_weights)
    loss_box = (deltas[pos_img, pos_idx] - target_deltas).abs().sum()
    w_cls, w_box = loss_weights
    return {"loss_o2m_cls": loss_cls / n * w_cls, "loss_o2m_box_reg": loss_box / n * w_box}
