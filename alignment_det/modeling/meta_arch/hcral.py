"""HCRAL (arXiv 2408.17182; docs/methods.md#hcral-atss): HCRA-C / HCRA-R losses and EATSS assignment, on
:class:`~alignment_det.modeling.meta_arch.atss.ATSS` (the paper's "FCOS+ATSS structure") and on
Detectron2's ``RetinaNet`` (the paper's RetinaNet ablations, docs/methods.md#hcral-on-retinanet).

``HCRALATSS`` changes three steps of ATSS, each switchable:

* ``use_eatss``: EATSS adds up to ``l = 3`` priors per GT to the ATSS positives (docs/methods.md#eatss);
* ``use_hcrac``: HCRA-C replaces the focal loss (:class:`~alignment_det.losses.hcra.HCRACLoss`);
* ``use_hcrar``: HCRA-R replaces the centerness-weighted GIoU loss
  (:class:`~alignment_det.losses.hcra.HCRARLoss`); with the head's AUX, 1.5 × HCRA-R(initial box)
  + 2.0 × HCRA-R(refined box), each with its own running mean;

and trains the quality branch on the IoU of the final box (``quality_target="iou"``). Inference is
ATSS's, unchanged: HCRAL costs nothing at test time.

The HCRA-C / HCRA-R statistics (GHM bin EMA, running mean of RCI_reg) are buffers, so checkpoints
resume them; an ATSS checkpoint has none and loads with nothing missing (they start fresh).

Logged per step: ``atss/pos_per_gt``, ``atss/eatss_extra_per_gt``, ``hcral/ghm_nonempty_bins``,
``hcral/hcrar_running_mean`` (besides Detectron2's ``num_pos_anchors``).
"""
import copy
from typing import Dict, List, Optional

import torch
from detectron2.layers import cat
from detectron2.modeling.box_regression import _dense_box_regression_loss
from detectron2.structures import Boxes, Instances
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor

from alignment_det.assigners.atss import RANK_IOU_MODES, ATSSAssignment, atss_assign
from alignment_det.losses.atss_losses import centerness_giou_loss, focal_cls_loss, quality_loss
from alignment_det.losses.focal import focal_targets
from alignment_det.losses.hcra import HCRACLoss, HCRARLoss, prior_ious
from alignment_det.utils.boxes import iou_targets
from alignment_det.utils.comm import positive_normalizer

from .dense import RetinaNet
from ..alignment_logging import log_score_iou_correlation
from ..assignment import ImageAssignment, label_anchors_assignment, positive_group
from ..events import put_scalars
from .atss import ATSS, DenseTargets

__all__ = ["HCRALATSS", "HCRALRetinaNet"]


def _hcrac_prior_ious(pred_boxes: Tensor, gt_instances: List[Instances], positive: Tensor, matched: Tensor, chunk: int) -> Tensor:
    """(N, R) ``u`` of HCRA-C: per image :func:`prior_ious` (a loop over images, not GTs)."""
    return torch.stack(
        [
            prior_ious(pred_boxes[i], inst.gt_boxes.tensor, positive[i], matched[i], gt_chunk_size=chunk)
            for i, inst in enumerate(gt_instances)
        ]
    )


def _hcrar(module: HCRARLoss, boxes: Tensor, gt: Tensor, scores: Tensor, normalizer: Tensor, log: bool) -> Tensor:
    out = module(boxes, gt, scores)
    if log:
        put_scalars(**{"hcral/hcrar_running_mean": out.running_mean})
    return out.loss_sum / normalizer


class HCRALATSS(ATSS):
    """ATSS + EATSS + HCRA-C + HCRA-R (module doc).

    Keyword arguments (besides :class:`ATSS`'s; defaults: docs/methods.md#hcral-defaults):
        use_eatss, eatss_num_extra (``l``, 3), eatss_rank_iou (``"anchor"`` | ``"pred"``);
        use_hcrac, hcrac: an :class:`HCRACLoss` (default: M 20, momentum 0.75, μ 0.7, θ 5,
            α_c 0, "mirrored");
        use_hcrar, hcrar: an :class:`HCRARLoss` (default: γ 1.5, α -0.1, ep 1e-3, m 0.01); with AUX a
            copy (own running mean) weighs the initial box;
        quality_target: ``"iou"`` (docs/methods.md#atss-detector: the centerness conv trained on IoU).
    """

    def __init__(
        self,
        *,
        use_eatss: bool = True,
        eatss_num_extra: int = 3,
        eatss_rank_iou: str = "anchor",
        use_hcrac: bool = True,
        hcrac: Optional[HCRACLoss] = None,
        use_hcrar: bool = True,
        hcrar: Optional[HCRARLoss] = None,
        quality_target: str = "iou",
        **kwargs,
    ):
        super().__init__(quality_target=quality_target, **kwargs)
        if eatss_rank_iou not in RANK_IOU_MODES:
            raise ValueError(f"eatss_rank_iou must be one of {RANK_IOU_MODES}, got {eatss_rank_iou!r}")
        if int(eatss_num_extra) < 0:
            raise ValueError(f"eatss_num_extra (EATSS l) must be >= 0, got {eatss_num_extra}")
        self.use_eatss = bool(use_eatss)
        self.num_extra_priors = int(eatss_num_extra) if use_eatss else 0
        self.rank_iou = eatss_rank_iou
        self.use_hcrac = bool(use_hcrac)
        self.use_hcrar = bool(use_hcrar)
        self.hcrac = (hcrac if hcrac is not None else HCRACLoss()) if use_hcrac else None
        self.hcrar = (hcrar if hcrar is not None else HCRARLoss(gamma=1.5)) if use_hcrar else None
        self.hcrar_init = copy.deepcopy(self.hcrar) if use_hcrar and self.has_aux else None

    # ------------------------------------------------------------------ EATSS
    @property
    def eatss_ranks_by_pred(self) -> bool:
        """EATSS ranks its extra priors by the IoU of their predicted boxes (``rank_iou="pred"``)."""
        return self.num_extra_priors > 0 and self.rank_iou == "pred"

    def needs_pred_boxes(self) -> bool:
        # HCRA-C's u needs every prior's predicted box; EATSS "pred" needs them before assignment.
        return self.use_hcrac or self.eatss_ranks_by_pred

    def _assign_image(self, sq, num_per_level, gt_boxes, pred_boxes, image, *, extra: bool = True) -> ATSSAssignment:
        """ATSS, plus with ``extra`` EATSS's ``num_extra_priors`` priors per GT on one image."""
        num_extra = self.num_extra_priors if extra else 0
        rank_by_pred = num_extra > 0 and self.rank_iou == "pred"
        if rank_by_pred and pred_boxes is None:
            raise ValueError("EATSS with rank_iou='pred' needs the predicted boxes (pred_boxes)")
        return atss_assign(
            sq, num_per_level, gt_boxes, topk=self.topk, num_extra=num_extra,
            rank_boxes=pred_boxes[image] if rank_by_pred else None, gt_chunk_size=self.gt_chunk_size,
        )

    def assignment_scalars(self, num_atss: int, num_extra: int, num_gt: int) -> Dict[str, float]:
        stats = super().assignment_scalars(num_atss, num_extra, num_gt)
        if self.num_extra_priors > 0:
            stats["atss/eatss_extra_per_gt"] = float(num_extra) / num_gt
        return stats

    def assignment_pred_boxes(self, anchors, features) -> Optional[Tensor]:
        # Only the assignment's needs (HCRA-C's would run the head for nothing).
        if not self.eatss_ranks_by_pred:
            return None
        return self.decode(anchors, self.dense_predictions(self.head(features))["deltas"])

    def assignment_info(self) -> Dict[str, float]:
        return {**super().assignment_info(), "eatss_l": self.num_extra_priors}

    def assignment_groups(self, sq, num_per_level, boxes, pred_boxes, image, levels) -> Dict:
        """ATSS's group ``atss``; with EATSS, ``eatss_extra``: the priors it adds."""
        groups = super().assignment_groups(sq, num_per_level, boxes, pred_boxes, image, levels)
        if self.num_extra_priors > 0:
            base = self._assign_image(sq, num_per_level, boxes, pred_boxes, image, extra=False).gt_index
            full = self._assign_image(sq, num_per_level, boxes, pred_boxes, image).gt_index
            extra = (full >= 0) & (full != base)
            groups["eatss_extra"] = positive_group(extra.nonzero()[:, 0], full[extra], sq, levels)
        return groups

    # ------------------------------------------------------------------ losses
    def losses(self, anchors, pred, targets: DenseTargets, gt_instances, pred_boxes=None) -> Dict[str, Tensor]:
        """ATSS's keys: ``loss_cls`` HCRA-C (else focal), ``loss_box_reg`` (+ ``loss_box_reg_init``)
        λ × HCRA-R (else centerness-weighted GIoU), ``loss_quality`` on the IoU target."""
        t = targets
        p = self.positives(anchors, pred, t)
        if self.use_hcrac:
            positive = (t.labels >= 0) & (t.labels != self.num_classes)
            u = _hcrac_prior_ious(pred_boxes, gt_instances, positive, t.matched, self.gt_chunk_size)
            out = self.hcrac(pred["logits"], focal_targets(t.labels, self.num_classes, pred["logits"].dtype), u)
            put_scalars(**{"hcral/ghm_nonempty_bins": out.num_nonempty_bins})
            losses = {"loss_cls": out.loss}
        else:
            losses = {"loss_cls": focal_cls_loss(
                pred["logits"], t.labels, t.normalizer, alpha=self.focal_loss_alpha, gamma=self.focal_loss_gamma
            )}
        weights = {"loss_box_reg": self.box_reg_loss_weight, "loss_box_reg_init": self.box_reg_init_loss_weight}
        boxes = {"loss_box_reg": p.boxes, "loss_box_reg_init": p.init_boxes}
        if self.use_hcrar:
            scores = p.cls_logits.detach().sigmoid()
            modules = {"loss_box_reg": self.hcrar, "loss_box_reg_init": self.hcrar_init}
            for key, b in boxes.items():
                if b is not None:
                    losses[key] = weights[key] * _hcrar(modules[key], b, p.gt, scores, t.normalizer, log=key == "loss_box_reg")
        else:
            ctr_normalizer = positive_normalizer(p.centerness.sum())
            for key, b in boxes.items():
                if b is not None:
                    losses[key] = weights[key] * centerness_giou_loss(b, p.gt, p.centerness, ctr_normalizer)
        losses["loss_quality"] = quality_loss(p.quality_logits, p.quality_targets, t.normalizer)
        return losses


class HCRALRetinaNet(RetinaNet):
    """Detectron2's RetinaNet with HCRA-C and HCRA-R (docs/methods.md#hcral-on-retinanet): anchors and max-IoU labels unchanged,
    HCRA-C over the valid (anchor, class) pairs with ``u`` from the decoded boxes, HCRA-R on the
    decoded boxes of the positives (λ_reg 2.5, γ 1.2). No quality branch; inference is RetinaNet's.

    Keyword arguments (besides ``RetinaNet``'s):
        use_hcrac, hcrac: as :class:`HCRALATSS` (off: RetinaNet's focal loss);
        use_hcrar, hcrar: default :class:`HCRARLoss` with γ 1.2 (off: RetinaNet's box loss);
        box_reg_loss_weight: λ_reg of HCRA-R (2.5, paper §4);
        gt_chunk_size: GTs per chunk of the IoU matrices (64, as ATSS).
    """

    def __init__(
        self,
        *,
        use_hcrac: bool = True,
        hcrac: Optional[HCRACLoss] = None,
        use_hcrar: bool = True,
        hcrar: Optional[HCRARLoss] = None,
        box_reg_loss_weight: float = 2.5,
        gt_chunk_size: int = 64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.use_hcrac = bool(use_hcrac)
        self.use_hcrar = bool(use_hcrar)
        self.hcrac = (hcrac if hcrac is not None else HCRACLoss()) if use_hcrac else None
        self.hcrar = (hcrar if hcrar is not None else HCRARLoss(gamma=1.2)) if use_hcrar else None
        self.box_reg_loss_weight = float(box_reg_loss_weight)
        self.gt_chunk_size = int(gt_chunk_size)

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(predictions, [self.num_classes, 4])
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, gt_instances=gt_instances)

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, gt_instances=None) -> Dict[str, Tensor]:
        """RetinaNet's ``loss_cls`` / ``loss_box_reg`` keys, each computed once: HCRA-C / HCRA-R where
        switched on, else RetinaNet's focal / box loss over Detectron2's EMA normaliser.

        Args: as ``RetinaNet.losses``, plus ``gt_instances`` (the GTs of every image, for HCRA-C's
        max-IoU of background anchors).
        """
        labels = torch.stack(gt_labels)  # (N, R), -1 ignore, K background
        matched = torch.stack(gt_boxes)
        valid = labels >= 0
        pos = valid & (labels != self.num_classes)
        pos_img, pos_idx = pos.nonzero(as_tuple=True)
        num_pos = pos_img.numel()
        put_scalars(num_pos_anchors=num_pos / max(len(gt_labels), 1))
        if not (self.use_hcrac and self.use_hcrar):  # RetinaNet's normaliser, as RetinaNet.losses updates it
            ema_normalizer = self._ema_update("loss_normalizer", max(num_pos, 1), 100)
        all_anchors = Boxes.cat(anchors).tensor
        logits = cat(pred_logits, dim=1)
        deltas = cat(pred_anchor_deltas, dim=1)
        # The positives' decoded boxes and their GTs: HCRA-R's input and the logged score-IoU signal.
        boxes = self.box2box_transform.apply_deltas(deltas[pos_img, pos_idx], all_anchors[pos_idx])
        gt = matched[pos_img, pos_idx]
        pos_logits = logits[pos_img, pos_idx, labels[pos_img, pos_idx]]
        onehot = focal_targets(labels, self.num_classes, logits.dtype)
        if self.use_hcrac:
            if gt_instances is None:
                raise ValueError("HCRALRetinaNet.losses needs gt_instances for HCRA-C (max IoU of background anchors)")
            N, R = labels.shape
            with torch.no_grad():
                boxes_all = self.box2box_transform.apply_deltas(
                    deltas.detach().reshape(N * R, 4), all_anchors.repeat(N, 1)
                ).view(N, R, 4)
            u = _hcrac_prior_ious(boxes_all, gt_instances, pos, matched, self.gt_chunk_size)
            out = self.hcrac(logits, onehot, u, valid)
            put_scalars(**{"hcral/ghm_nonempty_bins": out.num_nonempty_bins})
            losses = {"loss_cls": out.loss}
        else:
            loss_cls = sigmoid_focal_loss_jit(
                logits[valid], onehot[valid], alpha=self.focal_loss_alpha, gamma=self.focal_loss_gamma, reduction="sum"
            )
            losses = {"loss_cls": loss_cls / ema_normalizer}
        if self.use_hcrar:
            normalizer = positive_normalizer(num_pos, logits.device)
            scores = pos_logits.detach().sigmoid()
            losses["loss_box_reg"] = self.box_reg_loss_weight * _hcrar(self.hcrar, boxes, gt, scores, normalizer, log=True)
        else:
            loss_box = _dense_box_regression_loss(
                anchors, self.box2box_transform, pred_anchor_deltas, gt_boxes, pos,
                box_reg_loss_type=self.box_reg_loss_type, smooth_l1_beta=self.smooth_l1_beta,
            )
            losses["loss_box_reg"] = loss_box / ema_normalizer
        # RetinaNet's inference score σ(cls) of each positive, for its GT class (iou_targets detaches).
        log_score_iou_correlation(pos_logits.detach().sigmoid(), iou_targets(boxes, gt))
        return losses

    def assignment(self, batched_inputs) -> List[ImageAssignment]:
        """RetinaNet's positives, unchanged by HCRAL: group ``iou_matcher`` (``alignment_det.modeling.assignment``)."""
        return label_anchors_assignment(self, batched_inputs, group="iou_matcher")
