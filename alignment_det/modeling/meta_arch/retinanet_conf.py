"""RetinaNet-Conf (arXiv 2011.10465; docs/methods.md#retinanet-conf): RetinaNet with an object-confidence
branch on the classification tower, trained on the IoU of each positive's decoded box, and
fused with the class score before NMS.

Only three steps of Detectron2's ``RetinaNet`` change:

* ``forward_training``: also transposes the confidence output and passes it on;
* ``losses``: RetinaNet's ``loss_cls`` and ``loss_box_reg`` unchanged, plus ``loss_obj``;
* ``forward_inference``: ranks candidates by ``s = s_cls^(1-a) * s_obj^a`` on every level,
  then runs Detectron2's steps (threshold, top-k per level, decode, class-wise NMS) on ``s``;
  with ``a = 0`` it is RetinaNet's own code path.

Labelling (``label_anchors``), the head's inherited layers and the EMA loss normaliser are
Detectron2's.
"""
from typing import List, Optional, Tuple

import torch
from detectron2.layers import batched_nms, cat
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor

from alignment_det.layers.score_fusion import DEFAULT_FUSION_ALPHA, fuse_scores
from alignment_det.losses.objectness import objectness_loss
from alignment_det.utils.boxes import iou_targets

from .dense import RetinaNet
from ..alignment_logging import log_score_iou_correlation
from ..assignment import ImageAssignment, label_anchors_assignment
from ..events import put_scalars

__all__ = ["RetinaNetConf"]

_OBJ_LOSS_TYPES = ("ce", "gfocal")


class RetinaNetConf(RetinaNet):
    """Detectron2 ``RetinaNet`` + object confidence (use with ``RetinaNetConfHead``).

    Keyword arguments (besides all of ``RetinaNet``'s):
        fusion_alpha: exponent ``a`` of ``s = s_cls^(1-a) * s_obj^a`` at inference, in [0, 1];
            0.4 as in the paper and its code; 0 gives exactly RetinaNet's detections.
        obj_loss_weight: weight of ``loss_obj`` (1, as ``loss_cls`` and ``loss_box_reg``).
        neg_weight: > 0 enables the paper's ``CELoss_w``: background anchors get target 0
            at this weight (paper: 1e-4). 0 = BCE on positives only (paper default).
        obj_loss_type: "ce" (default, plain BCE) or "gfocal": the paper's GFocal-style
            variant, BCE on positives scaled by ``|y - sigmoid(x)|^gfocal_beta`` (as mmdet's
            QualityFocalLoss, factor not detached). Positives only.
        gfocal_beta: exponent of the "gfocal" variant.
        test_obj_thresh: if set, candidates with ``s_obj <= test_obj_thresh`` are dropped at
            inference (paper Table 4 with 0.5: no effect on AP). None = off (default).
    """

    def __init__(
        self,
        *,
        fusion_alpha: float = DEFAULT_FUSION_ALPHA,
        obj_loss_weight: float = 1.0,
        neg_weight: float = 0.0,
        obj_loss_type: str = "ce",
        gfocal_beta: float = 2.0,
        test_obj_thresh: Optional[float] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(fusion_alpha, bool) or not 0.0 <= float(fusion_alpha) <= 1.0:
            raise ValueError(
                f"fusion_alpha must be in [0, 1] (paper: 0.4; 0 = RetinaNet ranking), got {fusion_alpha!r}"
            )
        if obj_loss_type not in _OBJ_LOSS_TYPES:
            raise ValueError(f"obj_loss_type must be one of {_OBJ_LOSS_TYPES}, got {obj_loss_type!r}")
        if obj_loss_type == "gfocal" and neg_weight > 0:
            raise ValueError("obj_loss_type='gfocal' weights positives only; set neg_weight=0 (CELoss_w is 'ce')")
        if not hasattr(self.head, "obj_score"):
            raise ValueError(
                f"RetinaNetConf needs a head with an object-confidence output (RetinaNetConfHead), "
                f"got {type(self.head).__name__}"
            )
        self.fusion_alpha = float(fusion_alpha)
        self.obj_loss_weight = float(obj_loss_weight)
        self.neg_weight = float(neg_weight)
        self.obj_loss_type = obj_loss_type
        self.gfocal_beta = float(gfocal_beta)
        self.test_obj_thresh = test_obj_thresh

    # ------------------------------------------------------------------ training
    def forward_training(self, images, features, predictions, gt_instances):
        # Transpose the Hi*Wi*A dimension to the middle; the confidence has 1 value per anchor.
        pred_logits, pred_anchor_deltas, pred_obj = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_obj)

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_obj=None):
        """
        Args:
            anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes: as
                ``RetinaNet.losses``; gt_labels / gt_boxes: N tensors (R,) / (R, 4).
            pred_obj: #lvl tensors (N, Hi*Wi*A, 1), object-confidence logits.

        Returns:
            dict with RetinaNet's "loss_cls", "loss_box_reg" and "loss_obj".
        """
        # RetinaNet's two losses as they are; this also updates the EMA normaliser that
        # loss_obj shares (docs/methods.md#retinanet-conf-object-confidence: same normaliser, weights 1/1/1).
        losses = super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        if pred_obj is None:
            raise ValueError("RetinaNetConf.losses needs pred_obj, the confidence logits of the head")
        normalizer = self.loss_normalizer  # set by super().losses via _ema_update, >= 1

        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = valid_mask & (gt_labels != self.num_classes)
        obj_logits = cat(pred_obj, dim=1).squeeze(-1)  # (N, R)

        # Targets: IoU of each positive's decoded box with its matched GT, no gradient (docs/methods.md#retinanet-conf-object-confidence;
        # the official code does not detach -- an unintended gradient into the box branch).
        # Decoding only the P positives keeps this O(P), not O(N*R).
        pos_img, pos_anchor = pos_mask.nonzero(as_tuple=True)
        all_anchors = type(anchors[0]).cat(anchors).tensor  # (R, 4)
        pos_deltas = cat(pred_anchor_deltas, dim=1)[pos_img, pos_anchor].detach()  # (P, 4)
        pred_boxes = self.box2box_transform.apply_deltas(pos_deltas, all_anchors[pos_anchor])
        targets = iou_targets(pred_boxes, torch.stack(gt_boxes)[pos_img, pos_anchor])  # (P,)

        if self.obj_loss_type == "ce":
            loss_obj = objectness_loss(
                obj_logits,
                targets,  # compact: row-major order of pos_mask, as nonzero() above
                pos_mask,
                normalizer=normalizer,
                valid_mask=valid_mask if self.neg_weight > 0 else None,
                neg_weight=self.neg_weight,
            )
        else:  # "gfocal": per-positive BCE x |y - p|^beta
            pos_logits = obj_logits[pos_img, pos_anchor]  # (P,)
            per_pos = objectness_loss(
                pos_logits, targets, torch.ones_like(targets, dtype=torch.bool),
                normalizer=normalizer, reduction="none",
            )
            modulation = (targets - pos_logits.sigmoid()).abs().pow(self.gfocal_beta)
            loss_obj = (per_pos * modulation).sum()
        losses["loss_obj"] = self.obj_loss_weight * loss_obj

        if targets.numel() > 0:
            with torch.no_grad():
                pos_obj = obj_logits[pos_img, pos_anchor].sigmoid()
                stats = torch.stack([pos_obj.mean(), targets.mean()]).tolist()
                # The inference ranking score of each positive for its GT class (fused, docs/methods.md#retinanet-conf-score-fusion).
                pos_cls = cat(pred_logits, dim=1)[pos_img, pos_anchor, gt_labels[pos_img, pos_anchor]].sigmoid()
                pos_scores = fuse_scores(pos_cls[:, None], pos_obj[:, None], self.fusion_alpha)[:, 0]
            put_scalars(obj_pred_mean_pos=stats[0], obj_target_mean_pos=stats[1])
            log_score_iou_correlation(pos_scores, targets)
        return losses

    def assignment(self, batched_inputs) -> List[ImageAssignment]:
        """RetinaNet's positives, unchanged by the method: group ``iou_matcher`` from Detectron2's
        ``label_anchors`` (``alignment_det.modeling.assignment`` contract)."""
        return label_anchors_assignment(self, batched_inputs, group="iou_matcher")

    # ----------------------------------------------------------------- inference
    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]):
        pred_logits, pred_anchor_deltas, pred_obj = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        fused = self.fusion_alpha > 0 or self.test_obj_thresh is not None

        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            deltas_per_image = [x[img_idx] for x in pred_anchor_deltas]
            if not fused:
                # a = 0: literally RetinaNet.forward_inference's body, so the detections are
                # bit-identical to Detectron2's RetinaNet with the same weights.
                scores_per_image = [x[img_idx].sigmoid_() for x in pred_logits]
                results.append(self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size))
            else:
                logits_per_image = [x[img_idx] for x in pred_logits]
                obj_per_image = [x[img_idx] for x in pred_obj]
                results.append(
                    self.inference_single_image_fused(
                        anchors, logits_per_image, obj_per_image, deltas_per_image, image_size
                    )
                )
        return results

    def inference_single_image_fused(
        self,
        anchors: List[Boxes],
        box_cls_logits: List[Tensor],
        box_obj_logits: List[Tensor],
        box_delta: List[Tensor],
        image_size: Tuple[int, int],
    ) -> Instances:
        """``RetinaNet.inference_single_image`` with ``s = s_cls^(1-a) * s_obj^a`` as the score.

        Args:
            anchors: #lvl Boxes, (R_l, 4) each.
            box_cls_logits: #lvl (R_l, K) class logits; box_obj_logits: #lvl (R_l, 1)
                confidence logits; box_delta: #lvl (R_l, 4).
            image_size: (H, W).

        Every level is fused (not only those with > top-k anchors, the official code's bug,
        docs/methods.md#retinanet-conf-score-fusion), then Detectron2's steps run on ``s``: keep ``s > test_score_thresh``,
        top-k per level, decode, class-wise NMS, ``max_detections_per_image``. The result is
        ``RetinaNet.inference_single_image`` on the dense fused scores: same boxes and classes,
        scores equal up to the last bit of float pow (tested).
        """
        pred = [
            self._decode_per_level_fused(a, c, o, d, self.test_score_thresh, self.test_topk_candidates, image_size)
            for a, c, o, d in zip(anchors, box_cls_logits, box_obj_logits, box_delta)
        ]
        pred = pred[0].cat(pred)
        keep = batched_nms(pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh)
        return pred[keep[: self.max_detections_per_image]]

    def _decode_per_level_fused(
        self,
        anchors: Boxes,
        cls_logits: Tensor,
        obj_logits: Tensor,
        pred_deltas: Tensor,
        score_thresh: float,
        topk_candidates: int,
        image_size: Tuple[int, int],
    ) -> Instances:
        """``DenseDetector._decode_per_level_predictions`` on the fused score of one level.

        cls_logits (R_l, K), obj_logits (R_l, 1), pred_deltas (R_l, 4). Same output as fusing
        the dense (R_l, K) scores and calling the parent step, without computing sigmoid and
        pow on all R_l x K entries: since sigmoid is monotonic, ``s > t`` holds exactly when
        the class logit exceeds a per-anchor bound,

            s_cls^(1-a) * s_obj^a > t  <=>  s_cls > tau = (t / s_obj^a)^(1/(1-a))
                                       <=>  x_cls > logit(tau),

        so one comparison on the raw logits (cheaper than RetinaNet's dense sigmoid) selects
        the candidates; the bound is loosened slightly against rounding, and the exact test
        ``s > t`` is applied to the candidates' fused scores, computed by ``fuse_scores`` as
        the dense path would (values can differ from a dense computation in the last bit: pow's
        vectorised and scalar kernels round differently).
        """
        a = self.fusion_alpha
        obj_scores = obj_logits.sigmoid()  # (R_l, 1)
        with torch.no_grad():
            if a < 1.0:
                # Bound in float64 on R_l values only, loosened by 1e-4 (relative) so rounding can
                # never drop an entry the dense path keeps; the exact test below removes the extras.
                o = obj_scores.double()
                tau = (score_thresh / o.pow(a)).pow(1.0 / (1.0 - a)) * (1.0 - 1e-4)  # inf where s_obj = 0
                bound = torch.logit(tau.clamp(max=1.0)).to(cls_logits.dtype)  # +inf: nothing can pass
            else:  # a = 1: s = s_obj for every class
                bound = torch.where(obj_scores > score_thresh, float("-inf"), float("inf"))
            if self.test_obj_thresh is not None:
                bound = bound.masked_fill(obj_scores <= self.test_obj_thresh, float("inf"))
        candidates = torch.nonzero(cls_logits > bound)  # (M, 2): anchor, class; row-major
        anchor_idxs, class_idxs = candidates.unbind(dim=1)
        # (M, 1) each: one 'class' per candidate, its anchor's confidence.
        scores = fuse_scores(cls_logits[anchor_idxs, class_idxs].sigmoid()[:, None], obj_scores[anchor_idxs], a)[:, 0]
        keep = scores > score_thresh  # the exact threshold of the dense path
        scores, topk_idxs = scores[keep], candidates[keep]

        # Detectron2's rule (DenseDetector._decode_per_level_predictions): under tracing the count is a
        # tensor, and clamping it keeps k = min(topk, candidates) in the graph; Python's min() would
        # freeze whichever side won on the example (k = 1000 fails on an image with fewer candidates).
        num_candidates = topk_idxs.shape[0]
        if isinstance(num_candidates, Tensor):
            num_topk = torch.clamp(num_candidates, max=topk_candidates)
        else:
            num_topk = min(num_candidates, topk_candidates)
        scores, idxs = scores.topk(num_topk)
        anchor_idxs, class_idxs = topk_idxs[idxs].unbind(dim=1)
        pred_boxes = self.box2box_transform.apply_deltas(pred_deltas[anchor_idxs], anchors.tensor[anchor_idxs])
        return Instances(image_size, pred_boxes=Boxes(pred_boxes), scores=scores, pred_classes=class_idxs)

    def fuse_level_scores(self, cls_scores: Tensor, obj_scores: Tensor) -> Tensor:
        """Dense reference: (R_l, K) class probabilities, (R_l, 1) confidences -> (R_l, K) scores,
        0 where ``test_obj_thresh`` drops the anchor. ``_decode_per_level_fused`` keeps exactly
        the entries of this tensor that exceed the score threshold (used by the tests)."""
        fused = fuse_scores(cls_scores, obj_scores, self.fusion_alpha)
        if self.test_obj_thresh is not None:
            fused = fused * (obj_scores > self.test_obj_thresh).to(fused.dtype)
        return fused
