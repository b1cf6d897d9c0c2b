"""MAL (Multiple Anchor Learning) bag losses on plain tensors.

Spec: docs/methods.md#mal-bag-losses. Reference code:
``DeLightCMU/MAL`` ``maskrcnn_benchmark/modeling/rpn/free_anchor_loss_IA.py`` (the FreeAnchor
likelihood). Per image ``i`` with GTs ``B (G, 4)``, classes ``c (G,)``:

* joint confidence of anchor ``j`` of GT ``g``'s bag:
  ``q[g, j] = p[bag[g, j], c_g] * exp(-beta * sum_coord SmoothL1_{0.11}(delta - encode(anchor, B_g)))``;
* positive bag: ``L_pos,g = -log MeanMax(q[g, selected])`` with
  ``MeanMax(x) = sum_j w_j x_j / sum_j w_j``, ``w_j = 1 / max(1 - x_j, 1e-12)``;
* negative bag: ``L_neg,i = sum_{r,k} n^gamma * -log(1 - n)``, ``n = p * (1 - Q)``, where ``Q (R, K)`` is the
  saturated IoU of each anchor's *predicted* box with the GTs of class ``k`` (no gradient);
* ``loss_mal_pos = alpha * sum L_pos / max(1, sum G)``,
  ``loss_mal_neg = (1 - alpha) * sum L_neg / max(k_bag, k_bag * sum G)``.

Paper vs code (docs/methods.md#mal-choices): the released code averages (mean-max) over the whole bag; the paper shrinks the
selected set from the whole bag to top-1 over training. Both are the same function here: the
mean-max is taken over the top-``m(lambda)`` entries of each bag (``progress=None`` -> whole bag).
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from alignment_det.assigners.mal_bags import (
    bag_eligible,
    build_anchor_bags,
    effective_bag_size,
    selection_count,
)
from alignment_det.utils.boxes import aligned_iou, decode_boxes, encode_boxes, pairwise_iou

__all__ = [
    "BagSelection",
    "bag_confidence",
    "mal_losses",
    "mean_max",
    "negative_bag_loss",
    "negative_bag_support",
    "positive_bag_loss",
    "select_bag_anchors",
    "select_top_confidences",
    "top_confidence_positions",
]

# docs/methods.md#mal-edge-cases: bag terms are clamped to [eps, 1 - eps] (mmdet PR #4082 clamps FreeAnchor's negative bag).
_PROB_EPS = 1e-6
# Mean-max weight floor, as in the released code (``clip(1 - logits, 1e-12, None)``).
_MEAN_MAX_EPS = 1e-12


class _StraightThroughClamp(torch.autograd.Function):
    """Clamp in the forward pass, identity in the backward pass (the code's ``Clip``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: Optional[float], hi: Optional[float]) -> torch.Tensor:
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None, None


def _clamp_st(x: torch.Tensor, lo: Optional[float] = None, hi: Optional[float] = None) -> torch.Tensor:
    return _StraightThroughClamp.apply(x, lo, hi)


def bag_confidence(
    cls_prob: torch.Tensor,
    box_deltas: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    bags: torch.Tensor,
    *,
    bbox_reg_weight: float = 0.75,
    smooth_l1_beta: float = 0.11,
    box_coder_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
) -> torch.Tensor:
    """Joint confidence ``q = p_cls * p_loc`` of every anchor in every bag (docs/methods.md#mal-anchor-bags).

    Args:
        cls_prob: (R, K) sigmoid class probabilities of one image.
        box_deltas: (R, 4) predicted deltas (in the ``box_coder_weights`` encoding).
        anchors: (R, 4) XYXY.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,) int64 in [0, K).
        bags: (G, k) anchor indices from :func:`build_anchor_bags`.
        bbox_reg_weight: ``beta`` in ``p_loc = exp(-beta * L_reg)``.
        smooth_l1_beta: Smooth-L1 transition point (0.11 in the code, not Detectron2's 0.1).
        box_coder_weights: (10, 10, 5, 5) as the MAL code, not RetinaNet's (1, 1, 1, 1).

    Returns:
        (G, k) ``q``; differentiable w.r.t. both ``cls_prob`` and ``box_deltas``.
    """
    num_gt, k = bags.shape
    p_cls = cls_prob[bags, gt_classes[:, None].expand(num_gt, k)]
    with torch.no_grad():
        targets = encode_boxes(
            anchors[bags].reshape(-1, 4), gt_boxes[:, None, :].expand(num_gt, k, 4).reshape(-1, 4), box_coder_weights
        ).view(num_gt, k, 4)
    # Code: weight * SmoothL1 summed over the 4 coordinates (``smooth_l1_loss`` in free_anchor_loss_IA.py).
    l_reg = bbox_reg_weight * F.smooth_l1_loss(box_deltas[bags], targets, beta=smooth_l1_beta, reduction="none").sum(-1)
    return p_cls * torch.exp(-l_reg)


def top_confidence_positions(q: torch.Tensor, num_selected: int) -> Optional[torch.Tensor]:
    """(G, k) -> (G, m) positions (columns) of the ``m`` largest entries of each row of the detached
    ``q``; None when ``m >= k`` (the whole bag is kept, no sort needed)."""
    if num_selected >= q.shape[1]:
        return None
    return q.detach().topk(num_selected, dim=1, sorted=False).indices


def select_top_confidences(q: torch.Tensor, num_selected: int) -> torch.Tensor:
    """(G, k) -> (G, m): the ``m`` largest entries of each row (docs/methods.md#mal-selection-schedule).

    Which entries are kept is decided on the detached ``q`` (selection is not differentiated);
    the returned values carry ``q``'s gradient.
    """
    idx = top_confidence_positions(q, num_selected)
    return q if idx is None else q.gather(1, idx)  # mean-max is order-invariant: the whole bag as is


class BagSelection(NamedTuple):
    """The positive side of MAL for one image: bags and the anchors selected in them."""

    gt_idx: torch.Tensor  # (G',) int64: the ground truths that got a bag (indices into the image's GTs)
    bags: torch.Tensor  # (G', k_bag) int64 anchor indices, by decreasing anchor IoU
    selected: torch.Tensor  # (G', m) int64 anchor indices of the m most confident anchors of each bag
    q_selected: torch.Tensor  # (G', m) their joint confidence q (differentiable)


def select_bag_anchors(
    cls_prob: torch.Tensor,
    box_deltas: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    *,
    bag_size: int,
    num_selected: int,
    bbox_reg_weight: float = 0.75,
    smooth_l1_beta: float = 0.11,
    box_coder_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
    min_gt_size: float = 1.0,
    gt_chunk_size: int = 64,
) -> BagSelection:
    """Bags of one image and their ``m(lambda)`` selected anchors (docs/methods.md#mal-anchor-bags): what the positive
    bag loss trains on, and what ``MALRetinaNet.assignment`` shows.

    Args:
        cls_prob: (R, K) sigmoid probabilities; box_deltas: (R, 4); anchors: (R, 4) XYXY.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,) int64.
        bag_size: ``k_bag`` (already ``min(k, R)``); num_selected: ``m``.
        bbox_reg_weight, smooth_l1_beta, box_coder_weights: see :func:`bag_confidence`.
        min_gt_size, gt_chunk_size: see :func:`mal_losses`.
    """
    gt_idx = torch.nonzero(bag_eligible(gt_boxes, min_size=min_gt_size)).squeeze(1)
    boxes, classes = gt_boxes[gt_idx], gt_classes[gt_idx]
    bags = build_anchor_bags(boxes, anchors, bag_size, chunk_size=gt_chunk_size)
    q = bag_confidence(
        cls_prob, box_deltas, anchors, boxes, classes, bags,
        bbox_reg_weight=bbox_reg_weight, smooth_l1_beta=smooth_l1_beta, box_coder_weights=box_coder_weights,
    )
    pos = top_confidence_positions(q, num_selected)
    if pos is None:
        return BagSelection(gt_idx, bags, bags, q)
    return BagSelection(gt_idx, bags, bags.gather(1, pos), q.gather(1, pos))


def mean_max(q: torch.Tensor) -> torch.Tensor:
    """(G, m) -> (G,) FreeAnchor's Mean-max: ``sum_j w_j q_j / sum_j w_j``, ``w_j = 1/max(1 - q_j, 1e-12)``.

    Lies between the mean (all ``q`` small) and the max (one ``q`` near 1). As in the code, the
    ``1e-12`` floor is a straight-through clamp (gradient passes as if unclamped), and the
    normalised weights are not detached.
    """
    w = 1.0 / _clamp_st(1.0 - q, _MEAN_MAX_EPS, None)
    return (w * q).sum(dim=1) / w.sum(dim=1)


def positive_bag_loss(q_selected: torch.Tensor) -> torch.Tensor:
    """(G, m) selected confidences -> (G,) ``-log MeanMax(q)``.

    docs/methods.md#mal-edge-cases clamps the bag probability to ``[1e-6, 1 - 1e-6]`` (loss <= 13.8). The clamp is
    straight-through: the code's ``binary_cross_entropy`` keeps a ``-1/P`` gradient for tiny ``P``
    (it only caps the log), so a hopeless bag (``P < 1e-6``) still learns instead of freezing.
    """
    return -torch.log(_clamp_st(mean_max(q_selected), _PROB_EPS, 1.0 - _PROB_EPS))


@torch.no_grad()
def negative_bag_support(
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    pred_boxes: torch.Tensor,
    num_classes: int,
    *,
    saturation_thresh: float = 0.6,
    chunk_size: int = 64,
) -> torch.Tensor:
    """``Q (R, K)``: probability that anchor ``r`` is a positive of class ``k`` (docs/methods.md#mal-bag-losses). No grad.

    ``J = IoU(B, D)``; ``t2_g = max(max_r J[g, r], t1 + 1e-12)``;
    ``P = clamp((J - t1) / (t2_g - t1), 0, 1)``; ``Q[r, k] = max_{g: c_g = k} P[g, r]`` (0 without such g).

    Args:
        gt_boxes: (G, 4) XYXY, all GTs of the image (sub-pixel ones included, docs/methods.md#mal-edge-cases).
        gt_classes: (G,) int64 in [0, K).
        pred_boxes: (R, 4) XYXY decoded predictions.
        num_classes: K.
        saturation_thresh: ``t1``.
        chunk_size: GTs per chunk; the per-class max is accumulated with ``scatter_reduce(amax)``
            instead of the code's sparse-tensor trick, so memory is O(chunk_size * R + R * K).
    """
    num_anchors = pred_boxes.shape[0]
    q_t = torch.zeros((num_classes, num_anchors), dtype=torch.float32, device=pred_boxes.device)
    pred_boxes = pred_boxes.float()
    t1 = float(saturation_thresh)
    for s in range(0, gt_boxes.shape[0], chunk_size):
        iou = pairwise_iou(gt_boxes[s : s + chunk_size].float(), pred_boxes)  # (g, R)
        t2 = iou.max(dim=1, keepdim=True).values.clamp(min=t1 + 1e-12)
        # In fp32 t1 + 1e-12 == t1, so t2 - t1 can be 0 when no prediction beats t1; then every
        # J <= t1 and P must be 0. Flooring the denominator gives exactly that without the 0/0 NaN the
        # code produces when some J equals t1 exactly.
        prob = ((iou - t1) / (t2 - t1).clamp(min=1e-12)).clamp(0.0, 1.0)
        cls = gt_classes[s : s + chunk_size].long()[:, None].expand_as(prob)
        q_t.scatter_reduce_(0, cls, prob, reduce="amax", include_self=True)
    return q_t.t()


def negative_bag_loss(cls_prob: torch.Tensor, support: torch.Tensor, *, gamma: float = 2.0) -> torch.Tensor:
    """Sum over anchors and classes of ``n^gamma * -log(1 - n)``, ``n = p * (1 - Q)`` (docs/methods.md#mal-bag-losses).

    Args:
        cls_prob: (..., R, K) sigmoid probabilities (differentiable).
        support: ``Q`` broadcastable to ``cls_prob``, no gradient.

    Returns:
        scalar (un-normalised sum). ``n`` is clamped to ``[1e-6, 1 - 1e-6]`` with an ordinary clamp, as
        mmdet PR #4082 does, so a saturated false positive cannot produce a ~1e6 gradient.
    """
    n = (cls_prob * (1.0 - support)).clamp(_PROB_EPS, 1.0 - _PROB_EPS)
    return (n.pow(gamma) * -torch.log1p(-n)).sum()


def mal_losses(
    cls_logits: torch.Tensor,
    box_deltas: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: List[torch.Tensor],
    gt_classes: List[torch.Tensor],
    *,
    bag_size: int = 50,
    progress: Optional[float] = None,
    bbox_reg_weight: float = 0.75,
    smooth_l1_beta: float = 0.11,
    box_coder_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
    saturation_thresh: float = 0.6,
    pos_neg_alpha: float = 0.5,
    neg_gamma: float = 2.0,
    min_gt_size: float = 1.0,
    gt_chunk_size: int = 64,
) -> Dict[str, torch.Tensor]:
    """MAL training losses for one (per-GPU) batch.

    Args:
        cls_logits: (N, R, K) classification logits, all levels concatenated.
        box_deltas: (N, R, 4) box deltas in the ``box_coder_weights`` encoding.
        anchors: (R, 4) XYXY, shared by the batch.
        gt_boxes: list of N tensors (G_i, 4) XYXY in input pixels; G_i may be 0.
        gt_classes: list of N tensors (G_i,) int64 in [0, K).
        bag_size: anchors per bag ``k`` (code: 40 for R50/R101, 50 for X101); ``k_bag = min(k, R)``.
        progress: ``lambda = t / T`` for the paper's all->top-1 selection; ``None`` = whole bag
            (released code, docs/methods.md#mal-choices).
        bbox_reg_weight, smooth_l1_beta, box_coder_weights: see :func:`bag_confidence`.
        saturation_thresh: ``t1`` of :func:`negative_bag_support`.
        pos_neg_alpha: ``alpha``; the positive term is scaled by ``alpha``, the negative by ``1 - alpha``
            (code's FOCAL_LOSS_ALPHA; 0.5 gives the 0.5/0.5 split of docs/methods.md#mal-bag-losses).
        neg_gamma: focal exponent of the negative bag.
        min_gt_size: GTs whose shorter side is below this (px) get no bag (docs/methods.md#mal-edge-cases) but still feed ``Q``.
        gt_chunk_size: GTs per chunk for the (G, R) IoU matrices.

    Returns:
        ``{"loss_mal_pos", "loss_mal_neg"}`` scalars, and statistics that are not losses — pop them
        before summing the dict (Detectron2's trainer sums every value): ``"num_selected"`` (detached
        float, anchors kept per bag ``m``), and, for the selected anchors of every bag of the batch,
        ``"positive_scores"`` (P,) (probability of the bag's class) and ``"positive_ious"`` (P,) (IoU
        of the anchor's decoded box with the bag's GT), both detached.
    """
    if cls_logits.dim() != 3 or box_deltas.shape != (*cls_logits.shape[:2], 4):
        raise ValueError(
            f"expected cls_logits (N, R, K) and box_deltas (N, R, 4), got {tuple(cls_logits.shape)} "
            f"and {tuple(box_deltas.shape)}"
        )
    num_images, num_anchors, num_classes = cls_logits.shape
    if anchors.shape != (num_anchors, 4):
        raise ValueError(f"anchors must be (R={num_anchors}, 4), got {tuple(anchors.shape)}")
    if len(gt_boxes) != num_images or len(gt_classes) != num_images:
        raise ValueError(f"need one gt_boxes and gt_classes tensor per image ({num_images}), "
                         f"got {len(gt_boxes)} and {len(gt_classes)}")

    # docs/methods.md#mal-edge-cases: all bag terms in fp32 (AMP would otherwise run the 1/(1-q) weights and logs in fp16).
    cls_prob = torch.sigmoid(cls_logits.float())
    box_deltas = box_deltas.float()
    anchors = anchors.float()
    k_bag = effective_bag_size(bag_size, num_anchors)
    m = selection_count(k_bag, progress)

    pos_losses = []
    supports = []
    num_bags = 0
    pos_scores, pos_ious = [], []
    for i in range(num_images):
        boxes_i = gt_boxes[i].to(device=anchors.device, dtype=torch.float32)
        classes_i = gt_classes[i].to(device=anchors.device, dtype=torch.long)
        if boxes_i.shape[0] == 0:
            supports.append(cls_prob.new_zeros((num_anchors, num_classes)))  # docs/methods.md#mal-edge-cases: Q_i = 0
            continue
        pred_boxes = decode_boxes(box_deltas[i].detach(), anchors, box_coder_weights)
        supports.append(
            negative_bag_support(
                boxes_i, classes_i, pred_boxes, num_classes,
                saturation_thresh=saturation_thresh, chunk_size=gt_chunk_size,
            )
        )
        if m == 0:
            continue
        sel = select_bag_anchors(
            cls_prob[i], box_deltas[i], anchors, boxes_i, classes_i, bag_size=k_bag, num_selected=m,
            bbox_reg_weight=bbox_reg_weight, smooth_l1_beta=smooth_l1_beta, box_coder_weights=box_coder_weights,
            min_gt_size=min_gt_size, gt_chunk_size=gt_chunk_size,
        )
        if sel.gt_idx.numel() == 0:
            continue
        pos_losses.append(positive_bag_loss(sel.q_selected))
        num_bags += int(sel.gt_idx.numel())
        with torch.no_grad():  # the alignment statistic of the selected anchors (not part of the loss)
            sel_classes = classes_i[sel.gt_idx][:, None].expand_as(sel.selected)
            pos_scores.append(cls_prob[i][sel.selected, sel_classes].reshape(-1))
            gt_per_anchor = boxes_i[sel.gt_idx][:, None, :].expand(-1, sel.selected.shape[1], -1)
            pos_ious.append(aligned_iou(pred_boxes[sel.selected.reshape(-1)], gt_per_anchor.reshape(-1, 4)))

    if pos_losses:
        pos_sum = torch.cat(pos_losses).sum()
    else:
        # Keep the regression branch in the graph (zero gradient) so DDP sees every parameter used.
        pos_sum = box_deltas.sum() * 0.0
    neg_sum = negative_bag_loss(cls_prob, torch.stack(supports), gamma=neg_gamma)

    # docs/methods.md#mal-bag-losses normalisers; max(k_bag, k_bag * sum G) instead of the code's max(1, ...) so a batch without
    # GTs does not weigh the negative term ~k_bag x heavier (docs/methods.md#mal-edge-cases). Sum G counts GTs that got a bag.
    pos_norm = max(1, num_bags)
    neg_norm = max(k_bag, k_bag * num_bags, 1)
    return {
        "loss_mal_pos": pos_neg_alpha * pos_sum / pos_norm,
        "loss_mal_neg": (1.0 - pos_neg_alpha) * neg_sum / neg_norm,
        "num_selected": torch.tensor(float(m), device=cls_logits.device),
        "positive_scores": torch.cat(pos_scores) if pos_scores else cls_prob.new_zeros(0),
        "positive_ious": torch.cat(pos_ious) if pos_ious else cls_prob.new_zeros(0),
    }
