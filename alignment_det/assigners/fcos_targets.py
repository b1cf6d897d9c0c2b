"""FCOS one-to-many targets with mmdet ``FCOSHead`` semantics (DATE-F o2m branch), plain tensors.

docs/methods.md#date-losses (mmdet ``FCOSHead._get_target_single`` with ``center_sampling=False``,
``norm_on_bbox=False``), per image:

* ``ltrb[r, g] = (x - x0, y - y0, x1 - x, y1 - y)`` in pixels;
* location r is a candidate for GT g when ``min(ltrb) > 0`` (strictly inside the box, no centre
  sampling) and ``lo_l <= max(ltrb) <= hi_l`` for the level l of r, ranges
  ``(-1, 64), (64, 128), (128, 256), (256, 512), (512, inf)``;
* a location with several candidates takes the smallest-area GT (first one on equal areas);
* centerness target ``sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b))``.

``center_sampling_radius`` (off by default, as in DATE) is mmdet's ``center_sampling=True``: the
"strictly inside the box" test becomes "strictly inside ``[centre ± radius·stride_l]`` clipped to the
box" (the region of :func:`alignment_det.assigners.one_to_one.center_prior_mask`); the ltrb targets and
the range test still use the whole box. Detectron2's FCOS samples this way (radius 1.5).

Range bounds: mmdet tests ``>= lo and <= hi`` (closed), which the spec's "(64, 128]" notation writes as
half-open; the two differ only when max(ltrb) equals a bound exactly. We follow the mmdet code the
DATE results come from.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from alignment_det.assigners.one_to_one import center_prior_mask
from alignment_det.utils.boxes import box_area, point_box_distances

__all__ = ["FCOSTargets", "MMDET_FCOS_REGRESS_RANGES", "fcos_targets", "centerness_targets"]

INF = float("inf")
MMDET_FCOS_REGRESS_RANGES: Tuple[Tuple[float, float], ...] = (
    (-1.0, 64.0),
    (64.0, 128.0),
    (128.0, 256.0),
    (256.0, 512.0),
    (512.0, INF),
)


class FCOSTargets(NamedTuple):
    labels: torch.Tensor  # (R,) int64, K = background
    ltrb: torch.Tensor  # (R, 4) float32 pixels, 0 at background
    centerness: torch.Tensor  # (R,) float32, 0 at background
    gt_index: torch.Tensor  # (R,) int64, -1 at background


def centerness_targets(ltrb: torch.Tensor) -> torch.Tensor:
    """(P, 4) positive ltrb -> (P,) ``sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b))``."""
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values) * (tb.min(dim=1).values / tb.max(dim=1).values)
    return ratio.sqrt()


@torch.no_grad()
def fcos_targets(
    locations: torch.Tensor,
    level_ids: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    num_classes: int,
    *,
    regress_ranges: Sequence[Tuple[float, float]] = MMDET_FCOS_REGRESS_RANGES,
    center_sampling_radius: Optional[float] = None,
    strides: Optional[torch.Tensor] = None,
    gt_chunk_size: int = 256,
) -> FCOSTargets:
    """FCOS targets for one image (vectorised over locations x GTs, chunked over GTs).

    Args:
        locations: (R, 2) location centres (x, y) in input pixels.
        level_ids: (R,) int64, index into ``regress_ranges`` of each location's level.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,) int64 in [0, num_classes).
        num_classes: K, also the background label.
        regress_ranges: per-level (lo, hi) bounds on max(ltrb), closed as in mmdet.
        center_sampling_radius: None (DATE, mmdet's default: any location inside the box) or a
            radius in strides: only locations inside the GT's centre region are candidates.
        strides: (R,) stride of each location's level; needed with ``center_sampling_radius``.
        gt_chunk_size: GTs per chunk; bounds the (R, chunk, 4) temporaries.

    Returns:
        :class:`FCOSTargets` (labels, ltrb, centerness, gt_index), all of length R.
    """
    if center_sampling_radius is not None and (strides is None or strides.shape[0] != locations.shape[0]):
        raise ValueError("fcos_targets: center_sampling_radius needs strides, one per location")
    R, G = locations.shape[0], gt_boxes.shape[0]
    device = locations.device
    locs = locations.float()
    ranges = torch.as_tensor(regress_ranges, dtype=torch.float32, device=device)[level_ids.long()]  # (R, 2)
    lo, hi = ranges[:, 0, None], ranges[:, 1, None]
    best_area = torch.full((R,), INF, dtype=torch.float32, device=device)
    best_gt = torch.full((R,), -1, dtype=torch.long, device=device)
    boxes = gt_boxes.float()
    areas = box_area(boxes)
    for start in range(0, G, gt_chunk_size):  # chunks of GTs, not single boxes
        stop = min(start + gt_chunk_size, G)
        ltrb = point_box_distances(locs, boxes[start:stop])  # (R, C, 4)
        max_side = ltrb.max(dim=-1).values
        if center_sampling_radius is None:
            inside = ltrb.min(dim=-1).values > 0
        else:  # the centre region is clipped to the box, so inside it implies inside the box
            inside = center_prior_mask(locs, strides, boxes[start:stop], center_sampling_radius)
        ok = inside & (max_side >= lo) & (max_side <= hi)
        cand = torch.where(ok, areas[None, start:stop].expand(R, -1), torch.full_like(max_side, INF))
        a_min, a_idx = cand.min(dim=1)
        better = a_min < best_area  # strict: an earlier GT keeps a tie, as in one torch.min over all G
        best_area = torch.where(better, a_min, best_area)
        best_gt = torch.where(better, a_idx + start, best_gt)

    pos = best_gt >= 0
    labels = torch.full((R,), num_classes, dtype=torch.long, device=device)
    ltrb_t = torch.zeros((R, 4), dtype=torch.float32, device=device)
    ctr_t = torch.zeros((R,), dtype=torch.float32, device=device)
    if G > 0:
        pos_idx = torch.nonzero(pos).squeeze(1)
        g = best_gt[pos_idx]
        labels[pos_idx] = gt_classes[g].long()
        b = boxes[g]
        p = locs[pos_idx]
        pos_ltrb = torch.stack((p[:, 0] - b[:, 0], p[:, 1] - b[:, 1], b[:, 2] - p[:, 0], b[:, 3] - p[:, 1]), dim=1)
        ltrb_t[pos_idx] = pos_ltrb
        ctr_t[pos_idx] = centerness_targets(pos_ltrb)
    return FCOSTargets(labels, ltrb_t, ctr_t, best_gt)
