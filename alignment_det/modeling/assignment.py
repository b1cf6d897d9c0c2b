"""The label-assignment contract every meta-architecture exposes, for inspection and drawing.

A meta-architecture of this project implements ONE method::

    @torch.no_grad()
    def assignment(self, batched_inputs: List[dict]) -> List[ImageAssignment]

``batched_inputs`` are Detectron2 training inputs (``"image"`` (C, H, W) and ``"instances"`` with
``gt_boxes`` / ``gt_classes``, in the resolution the model sees). It runs the code the method's
training runs (its own assigner functions, on the predictions of the current weights when the
assignment depends on them) and returns, per image, an :class:`ImageAssignment`: the ground truth
and, for each named *group* of positives, which priors are positive for which ground truth. The
method does not train, log or change any state (it does run the head, in the model's current
train/eval mode).

Groups (names are part of the contract, ``tools/visualize_assignment.py`` draws each one):

=============  =====================================================================
RetinaNet      ``iou_matcher``: Detectron2's ``label_anchors`` (IoU >= 0.5, low-quality matches)
FCOS           ``fcos``: Detectron2's ``label_anchors`` (points inside the box and its centre region)
RetinaNetConf  ``iou_matcher`` (RetinaNet's labels, unchanged by the method)
MAL            ``bag``: the top-k anchors by IoU of each GT; ``selected``: the ``m(lambda)`` most
               confident of them at the model's current iteration (``set_iter`` outside a trainer)
DATE           ``o2o``: the Hungarian one-to-one match (POTO quality or OneNet cost);
               ``o2m``: the one-to-many positives (FCOS ranges for DATE-F, IoU matcher for DATE-R)
ATSS, HCRAL    ``atss``: the ATSS positives (priors: the square assignment anchors of side
               8 strides); ``eatss_extra``: the priors EATSS adds to them (HCRAL-ATSS)
HCRALRetinaNet ``iou_matcher`` (RetinaNet's labels, unchanged by the method)
=============  =====================================================================

A prior is an anchor box (``priors`` (P, 4) XYXY) or a point (``priors`` (P, 2) (x, y)); a group may
use another prior set than its neighbour (DATE-R: points for o2o, anchors for o2m), which is why
each group carries the geometry of its own positives.

Training side: :func:`count_gts_without_positives` is where ATSS (HCRAL-ATSS) and DATE report the
ground-truth boxes that their assignment left without any positive prior (too small for the grid,
or an input shrunk too far), which would otherwise not be trained on without a word.
"""
import logging
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor

from .events import put_scalars

logger = logging.getLogger(__name__)

__all__ = [
    "GTS_WITHOUT_POSITIVES_KEY",
    "ImageAssignment",
    "PositiveGroup",
    "count_gts_without_positives",
    "gt_index_of_matched_boxes",
    "label_anchors_assignment",
    "level_ids_of",
    "make_image_assignment",
    "positive_group",
    "training_inputs",
]


class PositiveGroup(NamedTuple):
    """The positives of one group in one image; P = number of (prior, ground truth) pairs."""

    prior_idx: Tensor  # (P,) int64, index into the prior set the group was drawn from
    gt_idx: Tensor  # (P,) int64, index into ImageAssignment.gt_boxes
    priors: Tensor  # (P, 4) XYXY anchor boxes, or (P, 2) point priors (x, y), input pixels
    level_ids: Tensor  # (P,) int64, FPN level of each prior (0 = the first head_in_features level)


class ImageAssignment(NamedTuple):
    """One image's assignment (see the module docstring for the group names)."""

    image_size: Tuple[int, int]  # (H, W) of the unpadded input
    gt_boxes: Tensor  # (G, 4) XYXY input pixels
    gt_classes: Tensor  # (G,) int64
    groups: Dict[str, PositiveGroup]  # in drawing order
    level_names: List[str]  # e.g. ["p3", ..., "p7"]
    info: Dict[str, float]  # method facts for the caption, e.g. {"iteration": 300, "num_selected": 9}


#: EventStorage scalar: ground-truth boxes of the batch that no prior is positive for.
GTS_WITHOUT_POSITIVES_KEY = "assign/gts_without_positives"
# One warning per run (process): the per-step count goes to GTS_WITHOUT_POSITIVES_KEY.
_warned_gts_without_positives = False


def count_gts_without_positives(
    gt_instances: Sequence[Instances], positive_gt_idx: Sequence[Tensor], *, smallest_stride: float, method: str,
) -> int:
    """Count the ground-truth boxes that the assignment gave no positive prior, log the count of
    the batch as ``assign/gts_without_positives`` and, the first time in a run, warn with the size
    of such a box, the input size and the smallest stride.

    Args:
        gt_instances: per image the ground truth (``gt_boxes`` XYXY in input pixels, ``image_size``).
        positive_gt_idx: per image the GT index of each positive prior (any shape; -1 = none).
        smallest_stride: the finest feature stride of the model, in input pixels.
        method: the model (and assignment) for the message, e.g. ``"DATE (o2m)"``.

    Returns:
        the number of such boxes in the batch.
    """
    global _warned_gts_without_positives
    unassigned = []
    for inst, idx in zip(gt_instances, positive_gt_idx):
        hit = torch.zeros(len(inst), dtype=torch.bool, device=inst.gt_boxes.device)
        idx = idx.reshape(-1)
        hit[idx[idx >= 0]] = True
        unassigned.append(~hit)
    count = int(torch.stack([u.sum() for u in unassigned]).sum()) if unassigned else 0  # one sync per step
    put_scalars(**{GTS_WITHOUT_POSITIVES_KEY: count}, smoothing_hint=False)
    if count and not _warned_gts_without_positives:
        _warned_gts_without_positives = True
        image = next(i for i, u in enumerate(unassigned) if u.any())
        box = gt_instances[image].gt_boxes.tensor[unassigned[image]][0]
        (h, w), bw, bh = gt_instances[image].image_size, float(box[2] - box[0]), float(box[3] - box[1])
        logger.warning(
            "%s: a ground-truth box of %.1f x %.1f px (w x h, in an input of %d x %d px) got no positive prior, so "
            "this assignment does not train on it; the smallest stride is %g px (%d such boxes in this batch). "
            "Boxes much smaller than the stride, or images resized too small, get none: check the input size (the "
            "mapper's resize) and tiny boxes in the data. Warned once per run; the count per step is logged as %s.",
            method, bw, bh, w, h, smallest_stride, count, GTS_WITHOUT_POSITIVES_KEY,
        )
    return count


def level_ids_of(num_per_level: Sequence[int], device=None) -> Tensor:
    """(R,) level index of each prior of a level-major concatenation with ``num_per_level`` priors per level."""
    counts = torch.as_tensor(list(num_per_level), dtype=torch.long, device=device)
    return torch.repeat_interleave(torch.arange(len(counts), device=device), counts)


def positive_group(prior_idx: Tensor, gt_idx: Tensor, priors: Tensor, level_ids: Tensor) -> PositiveGroup:
    """A :class:`PositiveGroup` from the indices and the full prior set ((R, 4) or (R, 2), (R,))."""
    prior_idx = prior_idx.reshape(-1).long()
    gt_idx = gt_idx.reshape(-1).long()
    if prior_idx.shape != gt_idx.shape:
        raise ValueError(f"positive_group: {prior_idx.numel()} prior indices but {gt_idx.numel()} GT indices")
    return PositiveGroup(prior_idx.cpu(), gt_idx.cpu(), priors[prior_idx].detach().cpu(), level_ids[prior_idx].cpu())


def gt_index_of_matched_boxes(matched_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """(R, 4) boxes copied from ``gt_boxes`` (G, 4) by a labeller that returns boxes, not indices
    (Detectron2's ``label_anchors``) -> (R,) the index of the GT each row equals, -1 for none.

    Duplicate GT boxes are indistinguishable; the first one is returned.
    """
    if gt_boxes.numel() == 0 or matched_boxes.numel() == 0:
        return torch.full((matched_boxes.shape[0],), -1, dtype=torch.long, device=matched_boxes.device)
    equal = (matched_boxes[:, None, :] == gt_boxes[None, :, :]).all(dim=-1)  # (R, G)
    idx = equal.float().argmax(dim=1)
    return torch.where(equal.any(dim=1), idx, torch.full_like(idx, -1))


def training_inputs(model, batched_inputs: List[dict]):
    """What ``DenseDetector.forward`` computes before ``forward_training``: (images, features list,
    gt_instances). Needs ``"instances"`` in every input."""
    if any("instances" not in x for x in batched_inputs):
        raise ValueError(
            "assignment() needs ground truth: every input dict must have 'instances' (gt_boxes, gt_classes), "
            "as a training DatasetMapper produces"
        )
    images = model.preprocess_image(batched_inputs)
    feats = model.backbone(images.tensor)
    features = [feats[f] for f in model.head_in_features]
    gt_instances = [x["instances"].to(model.device) for x in batched_inputs]
    return images, features, gt_instances


def make_image_assignment(image_size, inst: Instances, groups, level_names, info=None) -> ImageAssignment:
    """An :class:`ImageAssignment` from the unpadded (H, W), the GT ``Instances`` and the groups."""
    return ImageAssignment(
        (int(image_size[0]), int(image_size[1])),
        inst.gt_boxes.tensor.detach().cpu(),
        inst.gt_classes.detach().cpu(),
        groups,
        list(level_names),
        dict(info or {}),
    )


@torch.no_grad()
def label_anchors_assignment(
    model, batched_inputs: List[dict], *, group: str = "iou_matcher", points: bool = False,
    info: Optional[Dict[str, float]] = None,
) -> List[ImageAssignment]:
    """The assignment of a Detectron2 ``RetinaNet`` / ``FCOS`` (or a subclass that keeps their
    labelling): ``model.label_anchors`` on ``model.anchor_generator``'s anchors, one group ``group``.

    ``points=True`` reports the centres of the anchors (FCOS's "anchors" are stride-sized boxes
    standing for its points).
    """
    images, features, gt_instances = training_inputs(model, batched_inputs)
    anchors = model.anchor_generator(features)
    labels, matched = model.label_anchors(anchors, gt_instances)
    all_anchors = Boxes.cat(anchors)
    level_ids = level_ids_of([len(a) for a in anchors], device=all_anchors.device)
    priors = all_anchors.get_centers() if points else all_anchors.tensor
    num_classes = model.num_classes
    out = []
    for i, inst in enumerate(gt_instances):
        pos = (labels[i] >= 0) & (labels[i] < num_classes)
        prior_idx = torch.nonzero(pos).squeeze(1)
        gt_idx = gt_index_of_matched_boxes(matched[i][prior_idx], inst.gt_boxes.tensor)
        groups = {group: positive_group(prior_idx, gt_idx, priors, level_ids)}
        out.append(make_image_assignment(images.image_sizes[i], inst, groups, model.head_in_features, info))
    return out
