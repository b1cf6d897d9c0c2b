"""ATSS (Zhang et al., CVPR 2020) as a subclass of Detectron2's ``FCOS``: the baseline HCRAL is
measured against (docs/methods.md#atss-detector without HCRAL), configured as mmdetection's ATSS R50 config.

* head: :class:`~alignment_det.modeling.heads.ATSSHead` (GN towers, ``Scale`` per level, quality
  branch on the regression tower);
* assignment (:meth:`ATSS.label_anchors`): ATSS on square anchors of side ``anchor_scale · stride``
  (8) centred on FCOS's locations, :func:`alignment_det.assigners.atss.atss_assign`;
* losses (mmdet ``ATSSHead.loss``): focal (α 0.25, γ 2) / #pos, GIoU ×2 weighted by each positive's
  centerness target and divided by their sum, BCE of the quality branch / #pos; #pos and the
  centerness sum are means over ranks (mmdet's ``reduce_mean``), not Detectron2's EMA normaliser;
* quality target ``"centerness"`` (ATSS) or ``"iou"`` (IoU of the predicted box, as HCRAL trains it);
* inference: score ``σ(cls)·σ(quality)`` (mmdet multiplies, Detectron2's FCOS takes the square root),
  > 0.05, top-1000 per level, class-wise NMS 0.6, 100 detections.

Boxes are FCOS's: ltrb distances in strides decoded by ``Box2BoxTransformLinear`` from the point
"anchors" of side = stride; see :mod:`~alignment_det.modeling.heads.atss_head` for this reading.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.layers import cat
from detectron2.structures import Boxes, ImageList, Instances
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor

from alignment_det.assigners.atss import ATSSAssignment, atss_assign
from alignment_det.assigners.fcos_targets import centerness_targets
from alignment_det.losses.objectness import iou_targets
from alignment_det.utils.boxes import aligned_giou
from alignment_det.utils.comm import all_reduce_mean

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

__all__ = ["ATSS", "DenseTargets", "QUALITY_TARGETS"]

QUALITY_TARGETS = ("centerness", "iou")


class DenseTargets(NamedTuple):
    """Assignment of a batch, flattened over priors (R = Σ_l H_l·W_l)."""

    labels: Tensor  # (N, R) int64, K = background
    matched: Tensor  # (N, R, 4) XYXY assigned GT (zeros at background)
    pos_img: Tensor  # (P,) image of each positive
    pos_idx: Tensor  # (P,) prior of each positive
    normalizer: Tensor  # () max(1, #positives averaged over ranks)


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
        # EATSS (HCRALATSS): extra priors per GT and the IoU that ranks them; plain ATSS adds none.
        self.num_extra_priors = 0
        self.rank_iou = "anchor"

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
        """ATSS (and EATSS, when ``num_extra_priors > 0``) labels, Detectron2's interface.

        Args:
            anchors: per level the point anchors (H_l·W_l, 4) of FCOS.
            gt_instances: N Instances with ``gt_boxes`` / ``gt_classes`` (G_i may be 0).
            pred_boxes: (N, R, 4) detached predicted boxes, needed when EATSS ranks by ``"pred"``.

        Returns:
            gt_labels: N tensors (R,) in [0, K] (K = background; ATSS ignores nothing);
            matched_gt_boxes: N tensors (R, 4), zeros at background.
        """
        sq = self.assignment_anchors(anchors)
        num_per_level = [len(a) for a in anchors]
        gt_labels, matched, num_atss, num_extra, gt_index = [], [], 0, 0, []
        for i, inst in enumerate(gt_instances):
            boxes = inst.gt_boxes.tensor
            r = self._assign_image(sq, num_per_level, boxes, pred_boxes, i, self.num_extra_priors)
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
        num_gt = max(sum(len(x) for x in gt_instances), 1)
        stats = {"atss/pos_per_gt": float(num_atss) / num_gt}
        if self.num_extra_priors > 0:
            stats["atss/eatss_extra_per_gt"] = float(num_extra) / num_gt
        put_scalars(**stats)
        count_gts_without_positives(
            gt_instances, gt_index, smallest_stride=min(self.anchor_generator.strides), method=type(self).__name__
        )
        return gt_labels, matched

    def _assign_image(self, sq: Tensor, num_per_level: List[int], gt_boxes: Tensor, pred_boxes: Optional[Tensor],
                      image: int, num_extra: int) -> ATSSAssignment:
        """ATSS (+ ``num_extra`` EATSS priors per GT) on one image's ``gt_boxes`` (G, 4)."""
        rank_by_pred = num_extra > 0 and self.rank_iou == "pred"
        if rank_by_pred and pred_boxes is None:
            raise ValueError("EATSS with rank_iou='pred' needs the predicted boxes (pred_boxes)")
        return atss_assign(
            sq, num_per_level, gt_boxes, topk=self.topk, num_extra=num_extra,
            rank_boxes=pred_boxes[image] if rank_by_pred else None, gt_chunk_size=self.gt_chunk_size,
        )

    @torch.no_grad()
    def assignment(self, batched_inputs: List[dict]) -> List[ImageAssignment]:
        """Group ``atss``: the ATSS positives; with EATSS, ``eatss_extra``: the priors it adds
        (``alignment_det.modeling.assignment`` contract). Priors: the square assignment anchors."""
        images, features, gt_instances = training_inputs(self, batched_inputs)
        anchors = self.anchor_generator(features)
        pred_boxes = None
        if self.eatss_ranks_by_pred:  # only the assignment's needs (HCRA-C's would run the head for nothing)
            pred_boxes = self.decode(anchors, self.dense_predictions(self.head(features))["deltas"])
        sq = self.assignment_anchors(anchors)
        num_per_level = [len(a) for a in anchors]
        levels = level_ids_of(num_per_level, device=sq.device)
        out = []
        for i, inst in enumerate(gt_instances):
            boxes = inst.gt_boxes.tensor
            base = self._assign_image(sq, num_per_level, boxes, pred_boxes, i, 0).gt_index
            pos = base >= 0
            groups = {"atss": positive_group(pos.nonzero()[:, 0], base[pos], sq, levels)}
            if self.num_extra_priors > 0:
                full = self._assign_image(sq, num_per_level, boxes, pred_boxes, i, self.num_extra_priors).gt_index
                extra = (full >= 0) & (full != base)
                groups["eatss_extra"] = positive_group(extra.nonzero()[:, 0], full[extra], sq, levels)
            info = {"topk": self.topk, "eatss_l": self.num_extra_priors}
            out.append(make_image_assignment(images.image_sizes[i], inst, groups, self.head_in_features, info))
        return out

    def dense_targets(self, gt_labels: Sequence[Tensor], matched: Sequence[Tensor]) -> DenseTargets:
        labels = torch.stack(list(gt_labels))
        pos = (labels >= 0) & (labels != self.num_classes)
        pos_img, pos_idx = pos.nonzero(as_tuple=True)
        num_pos = pos_img.numel()
        put_scalars(num_pos_anchors=num_pos / max(len(gt_labels), 1))
        normalizer = all_reduce_mean(torch.tensor(float(num_pos), device=labels.device)).clamp(min=1.0)
        return DenseTargets(labels, torch.stack(list(matched)), pos_img, pos_idx, normalizer)

    # ------------------------------------------------------------------ training
    def forward_training(self, images: ImageList, features: List[Tensor], predictions, gt_instances: List[Instances]):
        pred = self.dense_predictions(predictions)
        anchors = self.anchor_generator(features)
        pred_boxes = self.decode(anchors, pred["deltas"].detach()) if self.needs_pred_boxes() else None
        gt_labels, matched = self.label_anchors(anchors, gt_instances, pred_boxes)
        targets = self.dense_targets(gt_labels, matched)
        return self.losses(anchors, pred, targets, gt_instances, pred_boxes)

    @property
    def eatss_ranks_by_pred(self) -> bool:
        """EATSS ranks its extra priors by the IoU of their predicted boxes (``rank_iou="pred"``)."""
        return self.num_extra_priors > 0 and self.rank_iou == "pred"

    def needs_pred_boxes(self) -> bool:
        """Whether training decodes every prior's (detached) box before assignment."""
        return self.eatss_ranks_by_pred

    def losses(
        self,
        anchors: List[Boxes],
        pred: Dict[str, Optional[Tensor]],
        targets: DenseTargets,
        gt_instances: List[Instances],
        pred_boxes: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """``loss_cls``, ``loss_box_reg`` (+ ``loss_box_reg_init`` with AUX) and ``loss_quality``.

        Args:
            anchors: FCOS point anchors per level; pred: :meth:`dense_predictions`;
            targets: :meth:`dense_targets`; gt_instances: the batch's GTs; pred_boxes: (N, R, 4)
            detached final boxes if already decoded.
        """
        t = targets
        a = Boxes.cat(anchors).tensor[t.pos_idx]
        gt = t.matched[t.pos_img, t.pos_idx]
        losses = {"loss_cls": self.classification_loss(pred, targets, anchors, gt_instances, pred_boxes)}
        boxes = self.box2box_transform.apply_deltas(pred["deltas"][t.pos_img, t.pos_idx], a)
        losses["loss_box_reg"] = self.box_reg_loss_weight * self.box_loss(boxes, gt, a, pred, targets, init=False)
        if pred["deltas_init"] is not None:
            init = self.box2box_transform.apply_deltas(pred["deltas_init"][t.pos_img, t.pos_idx], a)
            losses["loss_box_reg_init"] = self.box_reg_init_loss_weight * self.box_loss(init, gt, a, pred, targets, init=True)
        ious = iou_targets(boxes, gt)  # detached
        if self.quality_target == "iou":
            quality_t = ious
        else:
            quality_t = centerness_targets(self.box2box_transform.get_deltas(a, gt))
        with torch.no_grad():  # the inference score σ(cls)·σ(quality) of each positive, for its GT class
            cls = pred["logits"][t.pos_img, t.pos_idx, t.labels[t.pos_img, t.pos_idx]].sigmoid()
            log_score_iou_correlation(cls * pred["quality"][t.pos_img, t.pos_idx].sigmoid(), ious)
        losses["loss_quality"] = (
            F.binary_cross_entropy_with_logits(pred["quality"][t.pos_img, t.pos_idx], quality_t, reduction="sum")
            / t.normalizer
        )
        return losses

    def classification_loss(self, pred, targets: DenseTargets, anchors, gt_instances, pred_boxes) -> Tensor:
        """Focal loss over every (prior, class) / #pos (mmdet ATSS)."""
        logits = pred["logits"]
        onehot = F.one_hot(targets.labels, num_classes=self.num_classes + 1)[..., :-1].to(logits.dtype)
        loss = sigmoid_focal_loss_jit(
            logits, onehot, alpha=self.focal_loss_alpha, gamma=self.focal_loss_gamma, reduction="sum"
        )
        return loss / targets.normalizer

    def box_loss(self, boxes: Tensor, gt: Tensor, anchors: Tensor, pred, targets: DenseTargets, *, init: bool) -> Tensor:
        """GIoU loss of the positives weighted by their centerness targets, divided by the sum of
        those targets (mean over ranks, at least 1), as mmdet's ATSSHead.

        Args:
            boxes: (P, 4) decoded predictions (with gradient); gt: (P, 4); anchors: (P, 4) point anchors.
            init: True for AUX's initial box (same loss here; HCRALATSS keeps separate statistics).
        """
        ctr = centerness_targets(self.box2box_transform.get_deltas(anchors, gt))
        denom = all_reduce_mean(ctr.sum().detach()).clamp(min=1.0)
        return (ctr * (1.0 - aligned_giou(boxes.float(), gt.float()))).sum() / denom

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
