"""MAL anchor bags and the anchor-selection schedule (pure torch).

Spec: docs/methods.md#mal-anchor-bags.

* A *bag* of a ground-truth box is the ``k_bag = min(bag_size, R)`` anchors with the
  highest IoU to it (top-k, not thresholded), as in the released code
  (``DeLightCMU/MAL`` ``free_anchor_loss_IA.py``).
* The *selection schedule* is the paper's "all-to-top-1" reading (docs/methods.md#mal-choices): at training
  progress ``lambda = t / T`` each bag keeps its
  ``m(lambda) = clamp(floor(k_bag * (1 - lambda)) + 1, 1, k_bag)`` most confident anchors;
  ``progress=None`` is the released code's "all" mode (``m = k_bag``).
"""
import math
from typing import Optional

import torch

from alignment_det.utils.boxes import min_side, pairwise_iou

__all__ = ["bag_eligible", "build_anchor_bags", "effective_bag_size", "selection_count"]

# ``selection_count`` takes lambda as a float ``t / T``; ``k * (1 - t / T)`` can land a few ulps
# below an integer it equals exactly in rationals (50 * (1 - 0.02) = 48.999...), and floor() would
# then drop one anchor. This slack is far below 1 / T for any real horizon.
_FLOOR_EPS = 1e-9


def effective_bag_size(bag_size: int, num_anchors: int) -> int:
    """``k_bag = min(bag_size, R)`` (docs/methods.md#mal-edge-cases: tiny inputs can have fewer anchors than bag slots)."""
    if bag_size < 1:
        raise ValueError(f"bag_size must be >= 1, got {bag_size}")
    return min(int(bag_size), int(num_anchors))


def bag_eligible(gt_boxes: torch.Tensor, *, min_size: float = 1.0) -> torch.Tensor:
    """(G, 4) XYXY -> (G,) bool: GTs that get an anchor bag.

    docs/methods.md#mal-edge-cases: a GT whose shorter side is below ``min_size`` px (1 px) makes ``encode`` produce very
    negative log-size targets, so ``p_loc ~ 0`` and its positive loss saturates; such GTs get no bag
    (they still contribute to the negative-bag support ``Q``).
    """
    return min_side(gt_boxes) >= min_size


def build_anchor_bags(
    gt_boxes: torch.Tensor, anchors: torch.Tensor, bag_size: int, chunk_size: int = 64
) -> torch.Tensor:
    """Top-``k_bag`` anchors by IoU for every GT.

    Args:
        gt_boxes: (G, 4) XYXY ground-truth boxes of one image.
        anchors: (R, 4) XYXY anchors of that image (all levels concatenated).
        bag_size: requested bag size ``k``; the bag holds ``k_bag = min(k, R)`` anchors.
        chunk_size: GTs per chunk. The (G, R) IoU matrix is ~400 MB for 500 GTs x 2e5 anchors,
            so it is only ever built ``chunk_size`` rows at a time (docs/methods.md#mal-edge-cases).

    Returns:
        (G, k_bag) int64 anchor indices, each row sorted by decreasing IoU. No gradient.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    k_bag = effective_bag_size(bag_size, anchors.shape[0])
    num_gt = gt_boxes.shape[0]
    if num_gt == 0 or k_bag == 0:
        return torch.zeros((num_gt, k_bag), dtype=torch.long, device=anchors.device)
    with torch.no_grad():
        gt_boxes = gt_boxes.float()
        anchors = anchors.float()
        # sorted=True so the result is deterministic and independent of the chunking.
        return torch.cat(
            [
                pairwise_iou(gt_boxes[s : s + chunk_size], anchors).topk(k_bag, dim=1, sorted=True).indices
                for s in range(0, num_gt, chunk_size)
            ],
            dim=0,
        )


def selection_count(bag_size: int, progress: Optional[float]) -> int:
    """Number of anchors kept per bag, ``m(lambda)``.

    Args:
        bag_size: the effective bag size ``k_bag`` (see :func:`effective_bag_size`).
        progress: ``lambda = t / T``, clamped to [0, 1]; ``None`` selects the "all" mode of the
            released code (docs/methods.md#mal-choices), i.e. the whole bag.

    Returns:
        ``clamp(floor(k_bag * (1 - lambda)) + 1, 1, k_bag)``: ``k_bag`` at the start, 1 at the end
        (0 only when ``k_bag == 0``).
    """
    if bag_size <= 0:
        return 0
    if progress is None:
        return int(bag_size)
    lam = min(max(float(progress), 0.0), 1.0)
    m = math.floor(bag_size * (1.0 - lam) + _FLOOR_EPS) + 1
    return int(min(max(m, 1), bag_size))
