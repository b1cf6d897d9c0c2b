"""ATSS (Zhang et al., CVPR 2020) as a subclass of Detectron2's ``FCOS``: the baseline HCRAL is
measured against (docs/methods.md#atss-detector without HCRAL), configured as mmdetection's ATSS R50 config.

* head: :class:`~alignment_det.modeling.heads.ATSSHead` (GN towers, ``Scale`` per level, quality
  branch on the regression tower);
* assignment (:meth:`ATSS.label_anchors`): ATSS on square anchors of side ``anchor_scale · stride``
  (8) centred on FCOS's locations, :func:`alignment_det.assigners.atss.atss_assign`;
* losses (mmdet ``ATSSHead.loss``): :func:`alignment_det.losses.atss_losses.atss_losses`, focal
  (α 0.25, γ 2) / #pos, GIoU ×2 weighted by each positive's centerness target and divided by their
  sum, BCE of the quality branch / #pos; #pos and the centerness sum are means over ranks (mmdet's
  ``reduce_mean``), not Detectron2's EMA normaliser;
* quality target ``"centerness"`` (ATSS) or ``"iou"`` (IoU of the predicted box, as HCRAL trains it);
* inference: score ``σ(cls)·σ(quality)`` (mmdet multiplies, Detectron2's FCOS takes the square root),
  > 0.05, top-1000 per level, class-wise NMS 0.6, 100 detections.

Boxes are FCOS's: ltrb distances in strides decoded by ``Box2BoxTransformLinear`` from the point
"anchors" of side = stride; see :mod:`~alignment_det.modeling.heads.atss_head` for this reading.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from detectron2.layers import cat
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor

from alignment_det.assigners.atss import ATSSAssignment, atss_assign
from alignment_det.assigners.fcos_targets import centerness_targets
from alignment_det.losses.atss_losses import atss_losses
from alignment_det.utils.boxes import iou_targets
from alignment_det.utils.comm import positive_normalizer

from .dense import FCOS
from ..alignment_logging import log_score_iou_correlation
from ..assignment import (
    ImageAssignment,
    count_gts_without_positives,
    level_ids_of,
    make_image_assignment,
    positive_group,
    training_inputs,
)
from ..events import put_scalars

__all__ = ["ATSS", "DenseTargets", "Positives", "QUALITY_TARGETS"]

QUALITY_TARGETS = ("centerness", "iou")


class DenseTargets(NamedTuple):
    """Assignment of a batch, flattened over priors (R = Σ_l H_l·W_l)."""

    labels: Tensor  # (N, R) int64, K = background
    matched: Tensor  # (N, R, 4) XYXY assigned GT (zeros at background)
    pos_img: Tensor  # (P,) image of each positive
    pos_idx: Tensor  # (P,) prior of each positive
    normalizer: Tensor  # () max(1, #positives averaged over ranks)


class Positives(NamedTuple):
    """What the losses read at the positives of a batch (P of them)."""

    gt: Tensor  # (P, 4) XYXY assigned GT
    boxes: Tensor  # (P, 4) decoded final boxes (with gradient)
    init_boxes: Optional[Tensor]  # (P, 4) decoded initial boxes of the head's AUX, else None
    centerness: Tensor  # (P,) centerness target of each positive's point in its GT
    quality_targets: Tensor  # (P,) target of the quality branch (centerness or IoU of ``boxes``)
    quality_logits: Tensor  # (P,) the quality branch
    cls_logits: Tensor  # (P,) classification logit of the GT class


class ATSS(FCOS):
    """ATSS on Detectron2's FCOS (module doc). Use with :class:`ATSSHead`.

    Keyword arguments (besides ``FCOS``'s: backbone, head, head_in_features, num_classes,
    focal_loss_alpha/gamma, test_*, max_detections_per_image, pixel_mean/std):
        anchor_scale: side of the square assignment anchors in strides (8).
        topk: ATSS candidates per level (9).
        quality_target: ``"centerness"`` (ATSS) or ``"iou"`` (HCRAL).
        box_reg_loss_weight: weight of the (final) box loss (2.0).
        box_reg_init_loss_weight: weight of the initial box loss with the head's AUX (1.5, VFNet).
        gt_chunk_size: GTs per chunk of the (priors x GTs) matrices of the assignment and of HCRA-C's
            prior IoUs (64: with 1,000 boxes at 800x1333, 256 raised HCRAL-ATSS's peak training memory to
            1.08-1.12x ATSS's, 64 keeps it at 0.97-1.04x; the assignment then takes 0.09-0.16 ms per box
            with either, within run-to-run spread, about 1 % of a CPU training step).
    """

    def __init__(
        self,
        *,
        anchor_scale: float = 8.0,
        topk: int = 9,
        quality_target: str = "centerness",
        box_reg_loss_weight: float = 2.0,
        box_reg_init_loss_weight: float = 1.5,
        gt_chunk_size: int = 64,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        **kwargs,
    ):
        super().__init__(
            test_score_thresh=test_score_thresh,
            test_topk_candidates=test_topk_candidates,
            test_nms_thresh=test_nms_thresh,
            **kwargs,
        )
        if not hasattr(self.head, "scales") or not hasattr(self.head, "ctrness"):
            raise ValueError(
                f"{type(self).__name__} needs alignment_det.modeling.heads.ATSSHead (per-level scales, quality "
                f"branch on the regression tower), got {type(self.head).__name__}"
            )
        if quality_target not in QUALITY_TARGETS:
            raise ValueError(f"quality_target must be one of {QUALITY_TARGETS}, got {quality_target!r}")
        if float(anchor_scale) <= 0 or int(topk) < 1:
            raise ValueError(f"anchor_scale must be > 0 and topk >= 1, got {anchor_scale} and {topk}")
        self.anchor_scale = float(anchor_scale)
        self.topk = int(topk)
        self.quality_target = quality_target
        self.box_reg_loss_weight = float(box_reg_loss_weight)
        self.box_reg_init_loss_weight = float(box_reg_init_loss_weight)
        self.gt_chunk_size = int(gt_chunk_size)

    @property
    def has_aux(self) -> bool:
        return getattr(self.head, "aux", None) is not None

    # ------------------------------------------------------------------ geometry
    def assignment_anchors(self, anchors: List[Boxes]) -> Tensor:
        """(R, 4) squares of side ``anchor_scale · stride`` centred on FCOS's locations (whose
        "anchors" are squares of side = stride)."""
        a = Boxes.cat(anchors).tensor
        half = (a[:, 2:] - a[:, :2]) * (self.anchor_scale / 2)
        ctr = (a[:, :2] + a[:, 2:]) / 2
        return torch.cat([ctr - half, ctr + half], dim=1)

    def decode(self, anchors: List[Boxes], deltas: Tensor) -> Tensor:
        """(N, R, 4) ltrb in strides -> (N, R, 4) XYXY boxes (``Box2BoxTransformLinear``, ReLU'd)."""
        a = Boxes.cat(anchors).tensor
        N, R = deltas.shape[:2]
        return self.box2box_transform.apply_deltas(deltas.reshape(N * R, 4), a.repeat(N, 1)).view(N, R, 4)

    def dense_predictions(self, predictions) -> Dict[str, Optional[Tensor]]:
        """Head outputs flattened over levels: logits (N, R, K), deltas (N, R, 4) (final box),
        quality (N, R), deltas_init (N, R, 4) with AUX else None."""
        K = self.num_classes
        dims = [K, 4, 1] + ([4] if len(predictions) == 4 else [])
        flat = [cat(x, dim=1) for x in self._transpose_dense_predictions(predictions, dims)]
        return {
            "logits": flat[0],
            "deltas": flat[1],
            "quality": flat[2].squeeze(-1),
            "deltas_init": flat[3] if len(flat) == 4 else None,
        }

    # ------------------------------------------------------------------ assignment
    @torch.no_grad()
    def label_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances], pred_boxes: Optional[Tensor] = None
    ):
        """ATSS labels (:meth:`_assign_image`), Detectron2's interface.

        Args:
            anchors: per level the point anchors (H_l·W_l, 4) of FCOS.
            gt_instances: N Instances with ``gt_boxes`` / ``gt_classes`` (G_i may be 0).
            pred_boxes: (N, R, 4) detached predicted boxes, for an assignment that ranks by them
                (HCRALATSS's EATSS ``"pred"``).

        Returns:
            gt_labels: N tensors (R,) in [0, K] (K = background; ATSS ignores nothing);
            matched_gt_boxes: N tensors (R, 4), zeros at background.
        """
        sq = self.assignment_anchors(anchors)
        num_per_level = [len(a) for a in anchors]
        gt_labels, matched, num_atss, num_extra, gt_index = [], [], 0, 0, []
        for i, inst in enumerate(gt_instances):
            boxes = inst.gt_boxes.tensor
            r = self._assign_image(sq, num_per_level, boxes, pred_boxes, i)
            gt_index.append(r.gt_index)
            pos = r.gt_index >= 0
            idx = r.gt_index.clamp(min=0)
            labels = torch.full_like(r.gt_index, self.num_classes)
            m = torch.zeros_like(sq)
            if len(inst):
                labels = torch.where(pos, inst.gt_classes[idx], labels)
                m = torch.where(pos[:, None], boxes[idx].to(m.dtype), m)
            gt_labels.append(labels)
            matched.append(m)
            num_atss += r.num_atss
            num_extra += r.num_extra
        put_scalars(**self.assignment_scalars(num_atss, num_extra, max(sum(len(x) for x in gt_instances), 1)))
        count_gts_without_positives(
            gt_instances, gt_index, smallest_stride=min(self.anchor_generator.strides), method=type(self).__name__
        )
        return gt_labels, matched

    def assignment_scalars(self, num_atss: int, num_extra: int, num_gt: int) -> Dict[str, float]:
        """Logged per step by :meth:`label_anchors`: ATSS positives per GT."""
        return {"atss/pos_per_gt": float(num_atss) / num_gt}

    def _assign_image(self, sq: Tensor, num_per_level: List[int], gt_boxes: Tensor, pred_boxes: Optional[Tensor],
                      image: int, *, extra: bool = True) -> ATSSAssignment:
        """ATSS on one image's ``gt_boxes`` (G, 4) (``extra``: whether a subclass adds its extra priors)."""
        return atss_assign(sq, num_per_level, gt_boxes, topk=self.topk, gt_chunk_size=self.gt_chunk_size)

    def assignment_pred_boxes(self, anchors: List[Boxes], features: List[Tensor]) -> Optional[Tensor]:
        """(N, R, 4) predicted boxes when the assignment ranks by them (none for ATSS)."""
        return None

    def assignment_info(self) -> Dict[str, float]:
        """The assignment's settings, reported with every :class:`ImageAssignment`."""
        return {"topk": self.topk}

    def assignment_groups(self, sq, num_per_level, boxes, pred_boxes, image, levels) -> Dict:
        """Group ``atss``: the ATSS positives of one image."""
        base = self._assign_image(sq, num_per_level, boxes, pred_boxes, image, extra=False).gt_index
        pos = base >= 0
        return {"atss": positive_group(pos.nonzero()[:, 0], base[pos], sq, levels)}

    @torch.no_grad()
    def assignment(self, batched_inputs: List[dict]) -> List[ImageAssignment]:
        """:meth:`assignment_groups` of every image (``alignment_det.modeling.assignment`` contract).
        Priors: the square assignment anchors."""
        images, features, gt_instances = training_inputs(self, batched_inputs)
        anchors = self.anchor_generator(features)
        pred_boxes = self.assignment_pred_boxes(anchors, features)
        sq = self.assignment_anchors(anchors)
        num_per_level = [len(a) for a in anchors]
        levels = level_ids_of(num_per_level, device=sq.device)
        out = []
        for i, inst in enumerate(gt_instances):
            groups = self.assignment_groups(sq, num_per_level, inst.gt_boxes.tensor, pred_boxes, i, levels)
            out.append(make_image_assignment(images.image_sizes[i], inst, groups, self.head_in_features, self.assignment_info()))
        return out

    def dense_targets(self, gt_labels: Sequence[Tensor], matched: Sequence[Tensor]) -> DenseTargets:
        labels = torch.stack(list(gt_labels))
        pos = (labels >= 0) & (labels != self.num_classes)
        pos_img, pos_idx = pos.nonzero(as_tuple=True)
        num_pos = pos_img.numel()
        put_scalars(num_pos_anchors=num_pos / max(len(gt_labels), 1))
        normalizer = positive_normalizer(num_pos, labels.device)
        return DenseTargets(labels, torch.stack(list(matched)), pos_img, pos_idx, normalizer)

    # ------------------------------------------------------------------ training
    def forward_training(self, images: ImageList, features: List[Tensor], predictions, gt_instances: List[Instances]):
        pred = self.dense_predictions(predictions)
        anchors = self.anchor_generator(features)
        pred_boxes = self.decode(anchors, pred["deltas"].detach()) if self.needs_pred_boxes() else None
        gt_labels, matched = self.label_anchors(anchors, gt_instances, pred_boxes)
        targets = self.dense_targets(gt_labels, matched)
        return self.losses(anchors, pred, targets, gt_instances, pred_boxes)

    def needs_pred_boxes(self) -> bool:
        """Whether training decodes every prior's (detached) box before assignment (not ATSS)."""
        return False

    def positives(self, anchors: List[Boxes], pred: Dict[str, Optional[Tensor]], targets: DenseTargets) -> Positives:
        """Decoded boxes, targets and predictions at the positives; logs ``align/score_iou_corr``
        of the inference score σ(cls)·σ(quality) against the IoU of the final box."""
        t = targets
        a = Boxes.cat(anchors).tensor[t.pos_idx]
        gt = t.matched[t.pos_img, t.pos_idx]
        boxes = self.box2box_transform.apply_deltas(pred["deltas"][t.pos_img, t.pos_idx], a)
        init = None
        if pred["deltas_init"] is not None:
            init = self.box2box_transform.apply_deltas(pred["deltas_init"][t.pos_img, t.pos_idx], a)
        centerness = centerness_targets(self.box2box_transform.get_deltas(a, gt))
        ious = iou_targets(boxes, gt)  # detached
        quality_logits = pred["quality"][t.pos_img, t.pos_idx]
        cls_logits = pred["logits"][t.pos_img, t.pos_idx, t.labels[t.pos_img, t.pos_idx]]
        with torch.no_grad():  # the inference score σ(cls)·σ(quality) of each positive, for its GT class
            log_score_iou_correlation(cls_logits.sigmoid() * quality_logits.sigmoid(), ious)
        quality_t = ious if self.quality_target == "iou" else centerness
        return Positives(gt, boxes, init, centerness, quality_t, quality_logits, cls_logits)

    def losses(
        self,
        anchors: List[Boxes],
        pred: Dict[str, Optional[Tensor]],
        targets: DenseTargets,
        gt_instances: List[Instances],
        pred_boxes: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """``loss_cls``, ``loss_box_reg`` (+ ``loss_box_reg_init`` with AUX) and ``loss_quality``
        (:func:`~alignment_det.losses.atss_losses.atss_losses`).

        Args:
            anchors: FCOS point anchors per level; pred: :meth:`dense_predictions`;
            targets: :meth:`dense_targets`; gt_instances: the batch's GTs; pred_boxes: (N, R, 4)
            detached final boxes if already decoded (unused by ATSS).
        """
        p = self.positives(anchors, pred, targets)
        return atss_losses(
            pred["logits"], targets.labels, p.boxes, p.gt, p.centerness, p.quality_logits, p.quality_targets,
            targets.normalizer, init_boxes=p.init_boxes, focal_alpha=self.focal_loss_alpha,
            focal_gamma=self.focal_loss_gamma, box_weight=self.box_reg_loss_weight,
            box_init_weight=self.box_reg_init_loss_weight,
        )

    # ------------------------------------------------------------------ inference
    def forward_inference(self, images: ImageList, features: List[Tensor], predictions):
        """Score ``σ(cls)·σ(quality)`` (no square root), then FCOS's threshold / top-k / NMS."""
        pred_logits, pred_deltas, pred_quality = self._transpose_dense_predictions(
            list(predictions[:3]), [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores = [x[img_idx].sigmoid_() * y[img_idx].sigmoid_() for x, y in zip(pred_logits, pred_quality)]
            deltas = [x[img_idx] for x in pred_deltas]
            results.append(self.inference_single_image(anchors, scores, deltas, image_size))
        return results
