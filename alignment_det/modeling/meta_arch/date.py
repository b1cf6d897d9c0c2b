"""DATE: dual assignment for NMS-free detection, as a subclass of Detectron2's ``FCOS``.

docs/methods.md#date. Training (:meth:`DATE.forward_training`) adds two groups of losses:

* one-to-one (o2o): POTO quality ``p^(1-α)·IoU^α`` inside the centre prior, Hungarian matching
  (:func:`alignment_det.assigners.one_to_one.one_to_one_assign`), OneNet losses focal ×2 / L1 ×5 /
  GIoU ×2 (:func:`alignment_det.losses.date_losses.o2o_losses`);
* one-to-many (o2m), training only: mmdet-style FCOS (DATE-F,
  :func:`alignment_det.assigners.fcos_targets.fcos_targets` + ``fcos_o2m_losses``) or RetinaNet
  (DATE-R: Detectron2's anchor generator and ``RetinaNet.label_anchors`` with
  ``Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches)``, focal ×2 and L1 on
  ``Box2BoxTransform`` deltas ×2, :func:`alignment_det.losses.date_losses.retinanet_o2m_losses`);

total ``λ_o2o·L_o2o + λ_o2m·L_o2m``. Inference (:meth:`DATE.forward_inference`) evaluates the o2o
predictor only: score ``σ(cls)`` (``σ(cls)·σ(f)`` with 3DMF) > 0.01, top-100 per level, merge,
top-100 per image, **no NMS**. :meth:`DATE.export_forward` is the same computation on a batched
tensor, traceable as one graph (see :mod:`alignment_det.modeling.meta_arch.date_export`).
"""
import logging
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.layers import batched_nms, cat
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor

from alignment_det.assigners.fcos_targets import MMDET_FCOS_REGRESS_RANGES, fcos_targets
from alignment_det.assigners.one_to_one import onenet_cost_assign, one_to_one_assign
from alignment_det.layers.max_filter_3d import fuse_filter_logits
from alignment_det.losses.date_losses import O2M_BOX_LOSSES, fcos_o2m_losses, o2o_losses, retinanet_o2m_losses
from alignment_det.utils.boxes import aligned_iou, ltrb_to_boxes

from .dense import FCOS
from ..alignment_logging import log_score_iou_correlation
from ..assignment import (
    ImageAssignment,
    count_gts_without_positives,
    gt_index_of_matched_boxes,
    level_ids_of,
    make_image_assignment,
    positive_group,
    training_inputs,
)
from ..events import put_scalars

__all__ = ["DATE"]

logger = logging.getLogger(__name__)

O2O_MATCHERS = ("poto", "onenet_cost")
TEST_BRANCHES = ("o2o", "o2m")
# Test-time decoding of the one-to-many branch (``test_branch="o2m"``, a diagnostic): mmdet 2.x's
# FCOS / RetinaNet ``test_cfg``, the code DATE is built on: σ(cls) > 0.05, top-1000 per level,
# class-wise NMS at IoU 0.5, then the top ``max_detections_per_image``.
O2M_TEST_SCORE_THRESH = 0.05
O2M_TEST_TOPK_CANDIDATES = 1000
O2M_TEST_NMS_THRESH = 0.5


class DATE(FCOS):
    """DATE-F / DATE-R (docs/methods.md#date) on Detectron2's FCOS.

    ``head`` must be a :class:`alignment_det.modeling.heads.DATEHead`; its ``o2m`` style must match
    this model's ``o2m``.
    """

    def __init__(
        self,
        *,
        backbone,
        head,
        head_in_features: Optional[List[str]] = None,
        num_classes: int,
        o2m: str = "fcos",
        o2o_matcher: str = "poto",
        poto_alpha: float = 0.8,
        center_radius: float = 1.5,
        empty_center_fallback: bool = True,
        o2o_loss_weights: Tuple[float, float, float] = (2.0, 5.0, 2.0),
        o2m_loss_weights: Optional[Sequence[float]] = None,
        lambda_o2o: float = 1.0,
        lambda_o2m: float = 1.0,
        o2m_regress_ranges: Sequence[Tuple[float, float]] = MMDET_FCOS_REGRESS_RANGES,
        o2m_center_sampling_radius: Optional[float] = None,
        o2m_box_loss: str = "iou",
        o2m_anchor_generator: Optional[DefaultAnchorGenerator] = None,
        o2m_box2box_transform: Optional[Box2BoxTransform] = None,
        o2m_anchor_matcher: Optional[Matcher] = None,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        test_score_thresh: float = 0.01,
        test_topk_candidates: int = 100,
        max_detections_per_image: int = 100,
        test_nms_thresh: Optional[float] = None,
        test_branch: str = "o2o",
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            backbone, head, head_in_features, num_classes, pixel_mean, pixel_std: as :class:`FCOS`.
            o2m: "fcos" (DATE-F, mmdet FCOS targets/losses) or "retinanet" (DATE-R).
            o2o_matcher: "poto" (DATE on COCO: POTO quality + centre prior) or "onenet_cost"
                (DATE's CrowdHuman configs: OneNet's focal/L1/GIoU cost, :func:`onenet_cost_assign`).
            poto_alpha: α of the POTO quality (0.8); center_radius: centre prior in strides (1.5).
            empty_center_fallback: candidate fallback for GTs with an empty centre region (deviation
                from the DATE code, docs/methods.md#date-choices; default on).
            o2o_loss_weights: cls / L1 / GIoU (2, 5, 2, OneNet); also the OneNet matching cost weights.
            o2m_loss_weights: FCOS cls / IoU / centerness (default (1, 1, 1)) or RetinaNet cls / L1
                (default (2, 2): the paper's λ_o2m = 2 realised as per-loss weights, as the code).
            lambda_o2o, lambda_o2m: branch weights (1, 1; Table 10's best DATE-F is 2 / 1).
            o2m_regress_ranges: per-level max-ltrb ranges of the FCOS o2m targets (mmdet's).
            o2m_center_sampling_radius: None (DATE: mmdet's FCOS without centre sampling) or a
                radius in strides (FCOS's 1.5): FCOS o2m positives only in each GT's centre region.
                Not in the paper; a control for the one-to-many form on large boxes.
            o2m_box_loss: the FCOS o2m box term, "iou" (DATE: mmdet's -ln IoU weighted by the
                centerness target) or "giou" (Detectron2 FCOS's 1 - GIoU, unweighted). Not in the
                paper; a control that moves the one-to-many branch one step towards Detectron2's FCOS.
            o2m_anchor_generator, o2m_box2box_transform, o2m_anchor_matcher: DATE-R's RetinaNet
                pieces (default: 9 anchors, octave base 4, deltas with weights 1, Matcher 0.4/0.5).
            focal_loss_alpha, focal_loss_gamma: focal loss of both branches (0.25, 2).
            test_nms_thresh: None (the method: no NMS). A value applies class-wise NMS at that IoU
                to the o2o detections, to check that NMS no longer changes them (paper Table 6:
                within 0.1 AP).
            test_branch: "o2o" (the method) or "o2m": evaluate the training-only one-to-many
                predictor instead, decoded as its detector family (FCOS: σ(cls)·σ(ctr); RetinaNet:
                σ(cls)) with NMS (:meth:`o2m_detections`). A diagnostic: it tells whether a weak
                DATE lacks good shared features (both branches weak) or a good one-to-one predictor.
            test_score_thresh: o2o score threshold (0.01); test_topk_candidates: per-level top-k
                (100; 1000 in the DATE-R config); max_detections_per_image: 100 (500 on CrowdHuman).
        """
        super().__init__(
            backbone=backbone,
            head=head,
            head_in_features=head_in_features,
            num_classes=num_classes,
            center_sampling_radius=center_radius,
            focal_loss_alpha=focal_loss_alpha,
            focal_loss_gamma=focal_loss_gamma,
            test_score_thresh=test_score_thresh,
            test_topk_candidates=test_topk_candidates,
            test_nms_thresh=None,  # DATE runs no NMS
            max_detections_per_image=max_detections_per_image,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )
        self.test_nms_thresh = test_nms_thresh
        if o2m not in ("fcos", "retinanet"):
            raise ValueError(f"DATE: o2m must be 'fcos' or 'retinanet', got {o2m!r}")
        if test_branch not in TEST_BRANCHES:
            raise ValueError(f"DATE: test_branch must be one of {TEST_BRANCHES}, got {test_branch!r}")
        self.test_branch = test_branch
        if o2o_matcher not in O2O_MATCHERS:
            raise ValueError(f"DATE: o2o_matcher must be one of {O2O_MATCHERS}, got {o2o_matcher!r}")
        if getattr(head, "o2m", o2m) != o2m:
            raise ValueError(
                f"DATE: model.o2m={o2m!r} but the head was built with o2m={head.o2m!r}; set both "
                "(the DATE-R config sets model.head.o2m and model.o2m to 'retinanet')"
            )
        # FCOS's point "anchors" (centres at j·s) are not used: DATE's locations are mmdet's
        # ((j + 0.5)·s, (i + 0.5)·s), computed by :meth:`locations`.
        del self.anchor_generator
        feature_shapes = backbone.output_shape()
        self.strides: List[int] = [int(feature_shapes[k].stride) for k in self.head_in_features]
        self.o2m = o2m
        self.o2o_matcher = o2o_matcher
        self.poto_alpha = float(poto_alpha)
        self.center_radius = float(center_radius)
        self.empty_center_fallback = bool(empty_center_fallback)
        self.o2o_loss_weights = tuple(float(w) for w in o2o_loss_weights)
        if o2m_loss_weights is None:
            o2m_loss_weights = (1.0, 1.0, 1.0) if o2m == "fcos" else (2.0, 2.0)
        self.o2m_loss_weights = tuple(float(w) for w in o2m_loss_weights)
        self.lambda_o2o = float(lambda_o2o)
        self.lambda_o2m = float(lambda_o2m)
        self.o2m_regress_ranges = tuple(tuple(float(v) for v in r) for r in o2m_regress_ranges)
        if o2m_center_sampling_radius is not None and o2m != "fcos":
            raise ValueError("DATE: o2m_center_sampling_radius applies to the FCOS one-to-many branch (o2m='fcos')")
        self.o2m_center_sampling_radius = None if o2m_center_sampling_radius is None else float(o2m_center_sampling_radius)
        if o2m_box_loss not in O2M_BOX_LOSSES:
            raise ValueError(f"DATE: o2m_box_loss must be one of {O2M_BOX_LOSSES}, got {o2m_box_loss!r}")
        if o2m_box_loss != "iou" and o2m != "fcos":
            raise ValueError("DATE: o2m_box_loss applies to the FCOS one-to-many branch (o2m='fcos')")
        self.o2m_box_loss = o2m_box_loss
        if o2m == "fcos" and len(self.o2m_regress_ranges) != len(self.strides):
            raise ValueError(
                f"DATE: {len(self.o2m_regress_ranges)} o2m_regress_ranges for {len(self.strides)} levels"
            )
        if o2m == "retinanet":
            if o2m_anchor_generator is None:
                o2m_anchor_generator = DefaultAnchorGenerator(
                    sizes=[[4 * s * 2 ** (i / 3) for i in range(3)] for s in self.strides],
                    aspect_ratios=[0.5, 1.0, 2.0],
                    strides=self.strides,
                    offset=0.0,
                )
            self.o2m_anchor_generator = o2m_anchor_generator
            self.o2m_box2box_transform = o2m_box2box_transform or Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
            self.o2m_anchor_matcher = o2m_anchor_matcher or Matcher(
                [0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True
            )
            num_cell = self.o2m_anchor_generator.num_cell_anchors
            if any(a != head.num_anchors for a in num_cell):
                raise ValueError(f"DATE-R: the head predicts {head.num_anchors} anchors, the generator has {num_cell}")

    # ------------------------------------------------------------------ geometry
    def locations(self, features: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Location centres of every level, flattened in ``permute_to_N_HWA_K`` order.

        Args:
            features: per level (N, C, H_l, W_l).

        Returns:
            locations (R, 2) float32 (x, y) = ((j + 0.5)·s_l, (i + 0.5)·s_l); strides (R,) float32;
            level_ids (R,) int64.
        """
        locs, strides, levels = [], [], []
        for lvl, (x, s) in enumerate(zip(features, self.strides)):
            H, W = x.shape[-2:]
            ys = (torch.arange(H, device=x.device, dtype=torch.float32) + 0.5) * s
            xs = (torch.arange(W, device=x.device, dtype=torch.float32) + 0.5) * s
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            locs.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1))
            strides.append(torch.full((H * W,), float(s), device=x.device))
            levels.append(torch.full((H * W,), lvl, dtype=torch.long, device=x.device))
        return torch.cat(locs), torch.cat(strides), torch.cat(levels)

    def _o2o_dense(self, predictions: Dict, loc_strides: Tensor, locations: Tensor):
        """Flattened o2o outputs: logits (N, R, K) (fused with 3DMF), probabilities (N, R, K), boxes (N, R, 4)."""
        K = self.num_classes
        cls = cat([permute_to_N_HWA_K(x, K) for x in predictions["o2o_cls"]], dim=1).float()
        ltrb = cat([permute_to_N_HWA_K(x, 4) for x in predictions["o2o_reg"]], dim=1).float()
        boxes = ltrb_to_boxes(locations[None], ltrb * loc_strides[None, :, None])
        filters = predictions.get("o2o_filter")
        if filters is not None:
            f = cat([permute_to_N_HWA_K(x, 1) for x in filters], dim=1).float()
            probs = torch.sigmoid(cls) * torch.sigmoid(f)
            logits = fuse_filter_logits(cls, f)
        else:
            probs, logits = torch.sigmoid(cls), cls
        return logits, probs, boxes

    # ------------------------------------------------------------------ training
    def forward_training(self, images: ImageList, features: List[Tensor], predictions: Dict, gt_instances):
        """
        Args:
            images: the padded batch; ``images.image_sizes`` are the unpadded (H, W) (L1 normaliser).
            features: per level (N, C, H_l, W_l); predictions: :meth:`DATEHead.forward` output.
            gt_instances: per image Instances with ``gt_boxes`` (G_i) and ``gt_classes``.

        Returns:
            dict of losses: ``loss_o2o_{cls,l1,giou}`` × λ_o2o and ``loss_o2m_{cls,iou (giou),ctr}``
            (FCOS) or ``loss_o2m_{cls,box_reg}`` (RetinaNet) × λ_o2m.
        """
        locations, loc_strides, level_ids = self.locations(features)
        logits, probs, boxes = self._o2o_dense(predictions, loc_strides, locations)
        gt_boxes = [inst.gt_boxes.tensor for inst in gt_instances]
        gt_classes = [inst.gt_classes for inst in gt_instances]
        matches = self.o2o_matches(images, probs, boxes, locations, loc_strides, gt_boxes, gt_classes)
        self._log_o2o_alignment(probs, boxes, gt_boxes, gt_classes, matches)
        losses = o2o_losses(
            logits, boxes, gt_boxes, gt_classes, matches, images.image_sizes,
            focal_alpha=self.focal_loss_alpha, focal_gamma=self.focal_loss_gamma,
            loss_weights=self.o2o_loss_weights,
        )
        losses = {k: v * self.lambda_o2o for k, v in losses.items()}

        if self.o2m == "fcos":
            o2m, num_pos, o2m_gt = self._fcos_o2m_losses(
                predictions, locations, loc_strides, level_ids, gt_boxes, gt_classes
            )
        else:
            o2m, num_pos, o2m_gt = self._retina_o2m_losses(features, predictions, gt_instances)
        o2m = {k: v * self.lambda_o2m for k, v in o2m.items()}
        # The o2m assignment, the dense one: the o2o match gives every GT a location (the empty-centre
        # fallback), so only o2m tells that a GT is too small for the grid.
        count_gts_without_positives(
            gt_instances, o2m_gt, smallest_stride=min(self.strides), method=f"{type(self).__name__} (o2m)"
        )

        num_images = max(len(gt_instances), 1)
        put_scalars(
            **{
                "date/num_o2o_matched": sum(int(m[0].numel()) for m in matches) / num_images,
                "date/num_o2m_pos": num_pos / num_images,
                "date/loss_o2o": float(sum(v.detach() for v in losses.values())),
                "date/loss_o2m": float(sum(v.detach() for v in o2m.values())),
            }
        )
        losses.update(o2m)
        return losses

    @torch.no_grad()
    def o2o_matches(self, images, probs, boxes, locations, loc_strides, gt_boxes, gt_classes):
        """The one-to-one assignment of every image: a list of ``(location_idx, gt_idx)`` (M_i,) pairs.

        Args:
            probs: (N, R, K) o2o probabilities; boxes: (N, R, 4) decoded o2o boxes; locations (R, 2),
            loc_strides (R,): :meth:`locations`; gt_boxes / gt_classes: per image (G_i, 4) / (G_i,).
        """
        matches = []
        for i in range(len(gt_boxes)):  # Hungarian is per image (scipy, CPU)
            if self.o2o_matcher == "poto":
                m = one_to_one_assign(
                    probs[i], boxes[i], locations, loc_strides, gt_boxes[i], gt_classes[i],
                    alpha=self.poto_alpha, center_radius=self.center_radius,
                    empty_center_fallback=self.empty_center_fallback,
                )
            else:
                m = onenet_cost_assign(
                    probs[i], boxes[i], gt_boxes[i], gt_classes[i], images.image_sizes[i],
                    weights=self.o2o_loss_weights, focal_alpha=self.focal_loss_alpha,
                    focal_gamma=self.focal_loss_gamma,
                )
            matches.append(m)
        return matches

    @staticmethod
    def _log_o2o_alignment(probs, boxes, gt_boxes, gt_classes, matches) -> None:
        """``align/score_iou_corr`` over the o2o matched pairs: the o2o probability of the GT class
        (the inference score, NMS-free) against the IoU of the matched location's box with its GT."""
        with torch.no_grad():
            scores = [probs[i][loc, gt_classes[i][g]] for i, (loc, g) in enumerate(matches)]
            ious = [aligned_iou(boxes[i][loc].float(), gt_boxes[i][g].float()) for i, (loc, g) in enumerate(matches)]
        if scores:
            log_score_iou_correlation(torch.cat(scores), torch.cat(ious))

    def _fcos_o2m_labels(self, locations, loc_strides, level_ids, gt_boxes, gt_classes):
        """DATE-F o2m targets of every image (mmdet FCOS semantics); ``loc_strides`` only matter with
        ``o2m_center_sampling_radius``."""
        return [
            fcos_targets(locations, level_ids, b, c, self.num_classes, regress_ranges=self.o2m_regress_ranges,
                         center_sampling_radius=self.o2m_center_sampling_radius, strides=loc_strides)
            for b, c in zip(gt_boxes, gt_classes)
        ]

    def _fcos_o2m_ltrb_pixels(self, o2m_reg: List[Tensor]) -> List[Tensor]:
        """The FCOS o2m ltrb per level as (N, H·W, 4) pixels. The head gives pixels (``exp``), or, with
        its ``o2m_norm_on_bbox`` (mmdet's ``norm_on_bbox``), strides, scaled here by the level's stride;
        IoU and GIoU are scale-invariant, so the loss equals mmdet's on stride-normalised targets."""
        ltrb = [permute_to_N_HWA_K(x, 4) for x in o2m_reg]
        if self.head.o2m_norm_on_bbox:
            ltrb = [x * s for x, s in zip(ltrb, self.strides)]
        return ltrb

    def _fcos_o2m_losses(self, predictions, locations, loc_strides, level_ids, gt_boxes, gt_classes):
        """DATE-F o2m: mmdet FCOS targets and losses; returns (losses, #positives in the batch, per
        image the (R,) GT index of each location, -1 at background)."""
        K = self.num_classes
        cls = cat([permute_to_N_HWA_K(x, K) for x in predictions["o2m_cls"]], dim=1)
        ltrb = cat(self._fcos_o2m_ltrb_pixels(predictions["o2m_reg"]), dim=1)
        ctr = cat([permute_to_N_HWA_K(x, 1) for x in predictions["o2m_ctr"]], dim=1).squeeze(-1)
        targets = self._fcos_o2m_labels(locations, loc_strides, level_ids, gt_boxes, gt_classes)
        labels = torch.stack([t.labels for t in targets])
        losses = fcos_o2m_losses(
            cls, ltrb, ctr, labels,
            torch.stack([t.ltrb for t in targets]), torch.stack([t.centerness for t in targets]),
            focal_alpha=self.focal_loss_alpha, focal_gamma=self.focal_loss_gamma,
            loss_weights=self.o2m_loss_weights, box_loss=self.o2m_box_loss,
        )
        return losses, int(((labels >= 0) & (labels < K)).sum()), [t.gt_index for t in targets]

    @torch.no_grad()
    def _retina_label_anchors(self, anchors: List[Boxes], gt_instances) -> Tuple[Tensor, Tensor, Tensor]:
        """DATE-R's o2m labels: Detectron2's ``RetinaNet.label_anchors`` with this model's
        ``o2m_anchor_matcher``. Returns (N, R) labels in {-1, 0..K} (-1 ignore, K background), (N, R, 4)
        matched GT boxes and (N, R) the GT index of each positive (-1 elsewhere)."""
        # label_anchors reads only these two attributes; DATE's own are the FCOS-side ones.
        labeller = SimpleNamespace(anchor_matcher=self.o2m_anchor_matcher, num_classes=self.num_classes)
        labels, matched = RetinaNet.label_anchors(labeller, anchors, gt_instances)
        labels, matched = torch.stack(labels), torch.stack(matched)
        pos = (labels >= 0) & (labels != self.num_classes)
        gt_index = torch.stack(
            [torch.where(p, gt_index_of_matched_boxes(m, inst.gt_boxes.tensor), torch.full_like(p, -1, dtype=torch.long))
             for p, m, inst in zip(pos, matched, gt_instances)]
        )
        return labels, matched, gt_index

    def _retina_o2m_losses(self, features, predictions, gt_instances):
        """DATE-R o2m (:func:`retinanet_o2m_losses`); returns (losses, #positives, (N, R) GT index of
        each anchor, -1 where not positive)."""
        K = self.num_classes
        anchors = self.o2m_anchor_generator(features)
        cls = cat([permute_to_N_HWA_K(x, K) for x in predictions["o2m_cls"]], dim=1)
        deltas = cat([permute_to_N_HWA_K(x, 4) for x in predictions["o2m_reg"]], dim=1)
        labels, matched, gt_index = self._retina_label_anchors(anchors, gt_instances)
        losses = retinanet_o2m_losses(
            cls, deltas, labels, Boxes.cat(anchors).tensor, matched,
            focal_alpha=self.focal_loss_alpha, focal_gamma=self.focal_loss_gamma,
            loss_weights=self.o2m_loss_weights, box_weights=self.o2m_box2box_transform.weights,
        )
        return losses, int((gt_index >= 0).sum()), gt_index

    # ------------------------------------------------------------------ assignment
    @torch.no_grad()
    def assignment(self, batched_inputs: List[Dict[str, Tensor]]) -> List[ImageAssignment]:
        """DATE's positives (``alignment_det.modeling.assignment`` contract), from the training code:
        group ``o2o`` (:meth:`o2o_matches` on the current o2o predictions, points) and group ``o2m``
        (DATE-F: mmdet FCOS targets on the points; DATE-R: the RetinaNet IoU matcher on its anchors)."""
        images, features, gt_instances = training_inputs(self, batched_inputs)
        predictions = self.head(features)
        locations, loc_strides, level_ids = self.locations(features)
        _, probs, boxes = self._o2o_dense(predictions, loc_strides, locations)
        gt_boxes = [inst.gt_boxes.tensor for inst in gt_instances]
        gt_classes = [inst.gt_classes for inst in gt_instances]
        matches = self.o2o_matches(images, probs, boxes, locations, loc_strides, gt_boxes, gt_classes)
        if self.o2m == "fcos":
            targets = self._fcos_o2m_labels(locations, loc_strides, level_ids, gt_boxes, gt_classes)
            o2m = [(torch.nonzero(t.gt_index >= 0).squeeze(1), t.gt_index) for t in targets]
            o2m_priors, o2m_levels = locations, level_ids
        else:
            anchors = self.o2m_anchor_generator(features)
            all_anchors = Boxes.cat(anchors)
            _, _, indices = self._retina_label_anchors(anchors, gt_instances)
            o2m = [(torch.nonzero(idx >= 0).squeeze(1), idx) for idx in indices]
            o2m_priors, o2m_levels = all_anchors.tensor, level_ids_of([len(a) for a in anchors], all_anchors.device)
        out = []
        for i, inst in enumerate(gt_instances):
            o2m_idx, o2m_gt = o2m[i]
            groups = {
                "o2o": positive_group(matches[i][0], matches[i][1], locations, level_ids),
                "o2m": positive_group(o2m_idx, o2m_gt[o2m_idx], o2m_priors, o2m_levels),
            }
            out.append(make_image_assignment(images.image_sizes[i], inst, groups, self.head_in_features))
        return out

    # ------------------------------------------------------------------ inference
    def o2o_detections(
        self,
        o2o_cls: List[Tensor],
        o2o_reg: List[Tensor],
        o2o_filter: Optional[List[Tensor]],
        locations: List[Tensor],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Top-scoring o2o detections of a batch, without NMS and without the score threshold.

        Per level the top ``test_topk_candidates`` (location, class) pairs by score, then the top
        ``max_detections_per_image`` of their union. Thresholding afterwards (``scores >
        test_score_thresh``) gives exactly "threshold, top-k per level, merge, top-k" (docs/methods.md#date-inference):
        scores above the threshold always rank before those below it. Static shapes, so the
        computation traces as one graph.

        Args:
            o2o_cls: per level (N, K, H, W) logits; o2o_reg: per level (N, 4, H, W) ltrb in strides;
            o2o_filter: per level (N, 1, H, W) 3DMF logits or None; locations: per level (H·W, 2).

        Returns:
            boxes (N, D, 4) XYXY unclipped, scores (N, D) sorted descending, classes (N, D) int64,
            D = min(max_detections_per_image, Σ_l min(topk, H_l·W_l·K)).
        """
        K = self.num_classes
        all_scores, all_boxes, all_classes = [], [], []
        for lvl, (cls, reg) in enumerate(zip(o2o_cls, o2o_reg)):
            N, _, Hl, Wl = cls.shape
            HW = Hl * Wl
            # Flattened in the native (K, H, W) layout (a view, no copy): index = k·HW + loc.
            if o2o_filter is None:
                # σ is monotonic: rank the logits and take σ of the k winners only.
                top_logits, top_idx = cls.reshape(N, -1).topk(min(self.test_topk_candidates, K * HW), dim=1)
                top_scores = torch.sigmoid(top_logits.float())
            else:
                scores = torch.sigmoid(cls.float()) * torch.sigmoid(o2o_filter[lvl].float())
                top_scores, top_idx = scores.reshape(N, -1).topk(min(self.test_topk_candidates, K * HW), dim=1)
            loc_idx = top_idx % HW
            ltrb = reg.reshape(N, 4, HW).gather(2, loc_idx[:, None, :].expand(-1, 4, -1))
            ltrb = ltrb.transpose(1, 2).float() * float(self.strides[lvl])  # (N, k, 4)
            all_boxes.append(ltrb_to_boxes(locations[lvl][loc_idx], ltrb))
            all_scores.append(top_scores)
            all_classes.append(torch.div(top_idx, HW, rounding_mode="floor"))
        scores, boxes, classes = torch.cat(all_scores, 1), torch.cat(all_boxes, 1), torch.cat(all_classes, 1)
        d = min(self.max_detections_per_image, scores.shape[1])
        scores, idx = scores.topk(d, dim=1)
        boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
        classes = classes.gather(1, idx)
        return boxes, scores, classes

    def _level_locations(self, features: List[Tensor]) -> List[Tensor]:
        locations, _, _ = self.locations(features)
        sizes = [x.shape[-2] * x.shape[-1] for x in features]
        return list(torch.split(locations, sizes))

    def o2m_detections(self, features: List[Tensor], o2m: Dict, image_sizes) -> List[Instances]:
        """The one-to-many predictor decoded as the detector it is supervised like (``test_branch="o2m"``).

        Per image and level: candidates with ``σ(cls) > O2M_TEST_SCORE_THRESH``, the top
        ``O2M_TEST_TOPK_CANDIDATES`` of them by ``σ(cls)``; boxes from the location and its ltrb in pixels
        (FCOS) or from the anchor and its deltas (RetinaNet), clipped to the unpadded image; score
        ``σ(cls)·σ(ctr)`` (FCOS, mmdet's centerness factor applied after the top-k) or ``σ(cls)``; then
        class-wise NMS at ``O2M_TEST_NMS_THRESH`` and the top ``max_detections_per_image``.

        Args:
            features: per level (N, C, H_l, W_l); o2m: :meth:`DATEHead.forward_o2m` output;
            image_sizes: per image (H, W) of the unpadded image.
        """
        # Not DenseDetector._decode_per_level_predictions: it decodes with ``self.box2box_transform``
        # (FCOS's stride-normalised one, not this branch's pixels or anchor deltas) and ranks by the
        # final score, while mmdet ranks by σ(cls) and multiplies the centerness in after the top-k.
        K = self.num_classes
        cls = [permute_to_N_HWA_K(x, K).float() for x in o2m["o2m_cls"]]
        if self.o2m == "fcos":
            reg = [x.float() for x in self._fcos_o2m_ltrb_pixels(o2m["o2m_reg"])]
            factors = [torch.sigmoid(permute_to_N_HWA_K(x, 1).float()) for x in o2m["o2m_ctr"]]
            boxes = [ltrb_to_boxes(loc[None], r) for loc, r in zip(self._level_locations(features), reg)]
        else:
            reg = [permute_to_N_HWA_K(x, 4).float() for x in o2m["o2m_reg"]]
            factors = [None] * len(cls)
            anchors = self.o2m_anchor_generator(features)
            boxes = [
                self.o2m_box2box_transform.apply_deltas(r.reshape(-1, 4), a.tensor.repeat(r.shape[0], 1)).reshape(r.shape)
                for a, r in zip(anchors, reg)
            ]
        results = []
        for i, image_size in enumerate(image_sizes):
            all_boxes, all_scores, all_classes = [], [], []
            for c, b, f in zip(cls, boxes, factors):
                prob = torch.sigmoid(c[i]).reshape(-1)  # index = prior · K + class
                cand = torch.nonzero(prob > O2M_TEST_SCORE_THRESH).squeeze(1)
                top, order = prob[cand].topk(min(O2M_TEST_TOPK_CANDIDATES, cand.numel()))
                cand = cand[order]
                prior = torch.div(cand, K, rounding_mode="floor")
                all_scores.append(top if f is None else top * f[i, prior, 0])
                all_boxes.append(b[i, prior])
                all_classes.append(cand % K)
            b, s, c = Boxes(torch.cat(all_boxes)), torch.cat(all_scores), torch.cat(all_classes)
            b.clip(image_size)
            keep = batched_nms(b.tensor, s, c, O2M_TEST_NMS_THRESH)[: self.max_detections_per_image]
            results.append(Instances(image_size, pred_boxes=b[keep], scores=s[keep], pred_classes=c[keep]))
        return results

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: Dict) -> List[Instances]:
        """o2o predictor only, no NMS (unless ``test_nms_thresh`` is set): per image an Instances with at
        most ``max_detections_per_image`` boxes (clipped to the unpadded image), scores >
        ``test_score_thresh`` and classes. With ``test_branch="o2m"``, :meth:`o2m_detections` instead."""
        if self.test_branch == "o2m":
            # The head's eval forward computes the o2o predictor only; this diagnostic runs the
            # towers again rather than give the method's inference path an o2m switch.
            cls_feats, reg_feats = self.head.forward_towers(features)
            return self.o2m_detections(features, self.head.forward_o2m(features, cls_feats, reg_feats), images.image_sizes)
        boxes, scores, classes = self.o2o_detections(
            predictions["o2o_cls"], predictions["o2o_reg"], predictions.get("o2o_filter"),
            self._level_locations(features),
        )
        results = []
        for i, image_size in enumerate(images.image_sizes):
            keep = scores[i] > self.test_score_thresh
            b, s, c = Boxes(boxes[i][keep]), scores[i][keep], classes[i][keep]
            b.clip(image_size)
            if self.test_nms_thresh is not None:  # a check of the method, not the method (see __init__)
                nms_keep = batched_nms(b.tensor, s, c, self.test_nms_thresh)
                b, s, c = b[nms_keep], s[nms_keep], c[nms_keep]
            results.append(Instances(image_size, pred_boxes=b, scores=s, pred_classes=c))
        return results

    def export_forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The inference graph on a batched image tensor, for tracing / export (o2o only, no NMS).

        Args:
            images: (N, 3, H, W) raw pixels in ``input_format`` order, H and W multiples of the
                backbone's ``size_divisibility`` (no padding is added; boxes are clipped to H x W).

        Returns:
            boxes (N, D, 4) XYXY, scores (N, D), classes (N, D) int64, D as :meth:`o2o_detections`.
            Rows with ``score <= test_score_thresh`` are padding: score 0, class -1, box 0.
        """
        if self.test_branch != "o2o":
            raise ValueError(f"DATE.export_forward exports the method's o2o inference; test_branch={self.test_branch!r} "
                             "is a diagnostic for evaluation only")
        x = (images - self.pixel_mean) / self.pixel_std
        feats = self.backbone(x)
        features = [feats[f] for f in self.head_in_features]
        cls_feats, reg_feats = self.head.forward_towers(features)
        o2o_cls, o2o_reg, o2o_filter = self.head.forward_o2o(cls_feats, reg_feats)
        boxes, scores, classes = self.o2o_detections(o2o_cls, o2o_reg, o2o_filter, self._level_locations(features))
        H, W = images.shape[-2:]
        boxes = torch.stack(
            (boxes[..., 0].clamp(0, W), boxes[..., 1].clamp(0, H), boxes[..., 2].clamp(0, W), boxes[..., 3].clamp(0, H)),
            dim=-1,
        )
        valid = scores > self.test_score_thresh
        scores = torch.where(valid, scores, torch.zeros_like(scores))
        classes = torch.where(valid, classes, torch.full_like(classes, -1))
        boxes = torch.where(valid[..., None], boxes, torch.zeros_like(boxes))
        return boxes, scores, classes
