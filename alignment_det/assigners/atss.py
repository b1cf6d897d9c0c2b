"""ATSS label assignment and its EATSS expansion, on plain tensors (docs/methods.md#atss-assignment).

ATSS (Zhang et al., CVPR 2020; mmdet ``ATSSAssigner`` with ``topk = 9``), per GT ``g``:

1. ``dist(a, g)`` = L2 distance between anchor and GT centres; on every level the ``min(topk, n_l)``
   closest anchors are candidates ``C_g`` (≈ 45 over five levels);
2. ``τ_g = mean + std`` of ``IoU(a, g)`` over ``C_g`` (unbiased std, 0 when ``|C_g| = 1``);
3. ``P_g = {a ∈ C_g : IoU(a, g) >= τ_g and the centre of a lies inside g by more than 0.01}``;
4. an anchor positive for several GTs keeps the one with the highest IoU (the lowest GT index on
   an exact tie, so the result does not depend on the chunking).

EATSS (HCRAL paper, Algorithm 1), per GT with ``P_g ≠ ∅``, before step 4:

5. ``Dis_f = max_{a ∈ P_g} dist(a, g)``; pool ``E_g = {a ∈ C_g \\ P_g : dist(a, g) <= Dis_f, centre
   inside g}`` (the candidates rejected only by the IoU threshold, within the positive radius);
6. rank ``e ∈ E_g`` by ``IoU(·, g) · (1 - dist(e, g) / (Dis_f + 1e-6))`` and add the top
   ``num_extra`` (``l = 3``; all of ``E_g`` when it is smaller). The IoU is the anchor's
   (``rank_boxes=None``, ``model.eatss_rank_iou="anchor"``) or that of another box per prior, e.g. the
   detached predicted box (``"pred"``). The ranking form is our reading (docs/methods.md#hcral-choices): the paper only
   says it combines distance and IoU.

Everything is vectorised over GTs; GTs are processed ``gt_chunk_size`` at a time so that the
(anchors x chunk) distance matrices stay bounded (1,000 GTs on an 800x1333 image's ~22k priors fit
in a few tens of MB). IoUs are computed only for the (candidates x GTs) pairs, not for all anchors.

Pure tensor layer: torch only.
"""
import itertools
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from alignment_det.utils.boxes import aligned_iou, box_centers

__all__ = ["ATSSAssignment", "atss_assign", "square_anchor_grid", "RANK_IOU_MODES", "INSIDE_MARGIN"]

RANK_IOU_MODES = ("anchor", "pred")
# Step 3's "centre strictly inside": mmdet ATSSAssigner requires min(l, t, r, b) > 0.01 px.
INSIDE_MARGIN = 0.01
# Step 6's denominator guard, as written in docs/methods.md#eatss.
_RANK_EPS = 1e-6


class ATSSAssignment(NamedTuple):
    gt_index: torch.Tensor  # (R,) int64: assigned GT, -1 = background
    num_atss: torch.Tensor  # () int64: (prior, GT) pairs made positive by ATSS (steps 1-3)
    num_extra: torch.Tensor  # () int64: pairs added by EATSS (steps 5-6)


def square_anchor_grid(
    height: int,
    width: int,
    strides: Sequence[int] = (8, 16, 32, 64, 128),
    scale: float = 8.0,
    offset: float = 0.5,
    device: Optional[torch.device] = None,
) -> Tuple[torch.Tensor, List[int]]:
    """ATSS's assignment anchors for an image, without Detectron2: squares of side ``scale·s``
    centred on ``((j + offset)·s, (i + offset)·s)`` for ``ceil(H/s) x ceil(W/s)`` cells per level,
    finest level first, row-major within a level. ``offset=0.5`` gives Detectron2's FCOS locations
    (what :class:`~alignment_det.modeling.meta_arch.ATSS` assigns on); mmdet's ATSS anchors use 0.

    Returns (R, 4) XYXY anchors on ``device`` (None: torch's default device) and the number per level.
    """
    out, counts = [], []
    for s in strides:
        h, w = -(-int(height) // s), -(-int(width) // s)
        ys, xs = torch.meshgrid((torch.arange(h, device=device) + offset) * s, (torch.arange(w, device=device) + offset) * s, indexing="ij")
        ctr = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()
        out.append(torch.cat([ctr - scale * s / 2, ctr + scale * s / 2], dim=1))
        counts.append(h * w)
    return torch.cat(out), counts


def _check_inputs(anchors, num_anchors_per_level, gt_boxes, rank_boxes, topk, num_extra):
    if anchors.dim() != 2 or anchors.shape[1] != 4:
        raise ValueError(f"atss_assign: anchors must be (R, 4) XYXY, got {tuple(anchors.shape)}")
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"atss_assign: gt_boxes must be (G, 4) XYXY, got {tuple(gt_boxes.shape)}")
    if sum(int(n) for n in num_anchors_per_level) != anchors.shape[0]:
        raise ValueError(
            f"atss_assign: num_anchors_per_level {list(num_anchors_per_level)} sums to "
            f"{sum(int(n) for n in num_anchors_per_level)}, but there are {anchors.shape[0]} anchors"
        )
    if rank_boxes is not None and rank_boxes.shape != anchors.shape:
        raise ValueError(f"atss_assign: rank_boxes must have the anchors' shape {tuple(anchors.shape)}, got {tuple(rank_boxes.shape)}")
    if int(topk) < 1 or int(num_extra) < 0:
        raise ValueError(f"atss_assign: topk must be >= 1 and num_extra >= 0, got {topk} and {num_extra}")
    if gt_boxes.numel() and not bool(torch.isfinite(gt_boxes).all()):
        raise ValueError(
            "atss_assign: gt_boxes contains NaN or inf; drop or repair those annotations "
            "(Detectron2's mapper keeps any finite box)"
        )


def _candidates(anchor_ctr: torch.Tensor, level_slices, gt_ctr: torch.Tensor, topk: int) -> torch.Tensor:
    """Step 1: (C, Kc) global indices of the ``min(topk, n_l)`` closest anchors of every level."""
    out = []
    gx, gy = gt_ctr[:, 0, None], gt_ctr[:, 1, None]
    for start, stop in level_slices:  # a handful of levels, vectorised over anchors and GTs
        # (C, n_l) squared distances, written per coordinate: a (C, n_l, 2) tensor summed over its
        # last dimension is ~20x slower on CPU.
        d2 = (gx - anchor_ctr[None, start:stop, 0]) ** 2 + (gy - anchor_ctr[None, start:stop, 1]) ** 2
        k = min(topk, stop - start)
        out.append(d2.topk(k, dim=1, largest=False).indices + start)
    return torch.cat(out, dim=1)


@torch.no_grad()
def atss_assign(
    anchors: torch.Tensor,
    num_anchors_per_level: Sequence[int],
    gt_boxes: torch.Tensor,
    *,
    topk: int = 9,
    num_extra: int = 0,
    rank_boxes: Optional[torch.Tensor] = None,
    gt_chunk_size: int = 256,
) -> ATSSAssignment:
    """ATSS (``num_extra = 0``) or EATSS (``num_extra = l > 0``) assignment for one image.

    Args:
        anchors: (R, 4) XYXY assignment anchors (squares of side 8·stride centred on the priors),
            levels concatenated finest first.
        num_anchors_per_level: R_l per level, summing to R.
        gt_boxes: (G, 4) XYXY; G may be 0. Non-finite values are an error.
        topk: closest anchors per level (9).
        num_extra: EATSS's ``l``; 0 = plain ATSS.
        rank_boxes: (R, 4) boxes whose IoU with the GT ranks the EATSS pool (``"pred"``); None =
            the anchors (``"anchor"``).
        gt_chunk_size: GTs per chunk.

    Returns:
        :class:`ATSSAssignment` with ``gt_index`` (R,) and the pair counts used for logging.
    """
    _check_inputs(anchors, num_anchors_per_level, gt_boxes, rank_boxes, topk, num_extra)
    device = anchors.device
    R, G = anchors.shape[0], gt_boxes.shape[0]
    gt_index = torch.full((R,), -1, dtype=torch.long, device=device)
    zero = torch.zeros((), dtype=torch.long, device=device)
    if R == 0 or G == 0:
        return ATSSAssignment(gt_index, zero, zero.clone())

    anchors = anchors.float()
    gts = gt_boxes.float()
    rank = None if rank_boxes is None else rank_boxes.detach().float()
    anchor_ctr = box_centers(anchors)
    # Level boundaries as Python ints: they only slice, so no tensor (and no device) is involved.
    bounds = [0, *itertools.accumulate(int(n) for n in num_anchors_per_level)]
    level_slices = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    pair_anchor: List[torch.Tensor] = []
    pair_gt: List[torch.Tensor] = []
    pair_iou: List[torch.Tensor] = []
    num_atss, num_added = zero.clone(), zero.clone()
    for start in range(0, G, gt_chunk_size):  # chunks of GTs, not single boxes
        g = gts[start : start + gt_chunk_size]  # (C, 4)
        C = g.shape[0]
        g_ctr = box_centers(g)
        cand = _candidates(anchor_ctr, level_slices, g_ctr, topk)  # (C, Kc)
        Kc = cand.shape[1]
        g_rep = g[:, None].expand(C, Kc, 4).reshape(-1, 4)
        iou = aligned_iou(anchors[cand].reshape(-1, 4), g_rep).view(C, Kc)
        # Step 2: unbiased std as torch / mmdet; a single candidate has no spread.
        std = iou.std(dim=1) if Kc > 1 else torch.zeros_like(iou[:, 0])
        thr = iou.mean(dim=1) + std
        # Step 3: candidate centre inside the GT by more than the margin on all four sides.
        cx, cy = anchor_ctr[cand, 0], anchor_ctr[cand, 1]  # (C, Kc) each
        ltrb_min = torch.minimum(
            torch.minimum(cx - g[:, 0, None], cy - g[:, 1, None]), torch.minimum(g[:, 2, None] - cx, g[:, 3, None] - cy)
        )
        inside = ltrb_min > INSIDE_MARGIN
        pos = (iou >= thr[:, None]) & inside
        selected = pos
        if num_extra > 0:
            dist = torch.sqrt((cx - g_ctr[:, 0, None]) ** 2 + (cy - g_ctr[:, 1, None]) ** 2)  # (C, Kc)
            dis_f = torch.where(pos, dist, torch.full_like(dist, float("-inf"))).amax(dim=1)  # -inf: no positive
            pool = inside & ~pos & (dist <= dis_f[:, None])
            rank_iou = iou if rank is None else aligned_iou(rank[cand].reshape(-1, 4), g_rep).view(C, Kc)
            score = rank_iou * (1.0 - dist / (dis_f[:, None] + _RANK_EPS))
            score = torch.where(pool, score, torch.full_like(score, float("-inf")))
            top_score, top_idx = score.topk(min(int(num_extra), Kc), dim=1)
            extra = torch.zeros_like(pos).scatter_(1, top_idx, torch.isfinite(top_score))
            selected = pos | extra
            num_added += extra.sum()
        num_atss += pos.sum()
        c_idx, k_idx = selected.nonzero(as_tuple=True)
        pair_anchor.append(cand[c_idx, k_idx])
        pair_gt.append(c_idx + start)
        pair_iou.append(iou[c_idx, k_idx])

    a_idx, g_idx, p_iou = torch.cat(pair_anchor), torch.cat(pair_gt), torch.cat(pair_iou)
    if a_idx.numel():
        # Step 4: highest IoU wins; on an exact tie the lowest GT index.
        best = torch.full((R,), float("-inf"), device=device).scatter_reduce(0, a_idx, p_iou, reduce="amax")
        is_best = p_iou == best[a_idx]
        winner = torch.full((R,), G, dtype=torch.long, device=device).scatter_reduce(
            0, a_idx[is_best], g_idx[is_best], reduce="amin"
        )
        gt_index = torch.where(winner < G, winner, gt_index)
    return ATSSAssignment(gt_index, num_atss, num_added)
