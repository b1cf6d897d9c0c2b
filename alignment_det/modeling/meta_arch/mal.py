"""MAL (Multiple Anchor Learning, CVPR 2020) as a Detectron2 ``RetinaNet`` subclass.

Spec: docs/methods.md#mal (``t`` / ``T``: docs/methods.md#training-progress; paper or code: docs/methods.md#mal-choices). The model is RetinaNet
with three training-time changes and none at inference:

* **anchor depression** (``AnchorDepression``): before the head, the top-``rho(t)`` positions of a
  class-agnostic CAM of every FPN level are scaled by 1/4 (released code, ``IA_TYPE=5``);
  the head runs once, on the depressed features;
* **anchor bags + selection**: ``label_anchors`` / the focal loss are replaced by the bag
  likelihood of ``alignment_det.losses.mal_loss.mal_losses`` (top-``k`` anchors by IoU per GT,
  mean-max over the ``m(lambda)`` most confident ones, saturated-IoU negative bag);
* the box coder is ``Box2BoxTransform(weights=(10, 10, 5, 5))`` (MAL code), used by the bag loss
  *and* by the inherited inference, so training and decoding agree.

``t`` is Detectron2's ``EventStorage.iter`` (0-based, restored on ``--resume``), ``T`` is the
``max_iter`` constructor argument, which configs set to ``"${..train.max_iter}"``.
MAL adds no parameters: a Detectron2 RetinaNet checkpoint of the same backbone/head loads as is.
"""
import logging
from typing import Dict, List, Optional

import torch
from torch import Tensor

from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances

from alignment_det.assigners.mal_bags import effective_bag_size, selection_count
from alignment_det.layers.anchor_depression import DEPRESSION_SCHEDULES, AnchorDepression
from alignment_det.losses.mal_loss import mal_losses, select_bag_anchors

from .dense import RetinaNet
from ..alignment_logging import log_score_iou_correlation
from ..assignment import ImageAssignment, level_ids_of, make_image_assignment, positive_group, training_inputs
from ..events import current_storage, put_scalars

__all__ = ["MALRetinaNet", "MAL_BOX_CODER_WEIGHTS", "MAL_SELECTION_MODES"]

logger = logging.getLogger(__name__)

# docs/methods.md#mal-defaults: the MAL code's box coder (maskrcnn-benchmark's RetinaNet default), not Detectron2's (1, 1, 1, 1).
MAL_BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# docs/methods.md#mal-choices: "schedule" = the paper's all -> top-1 selection; "all" = the released code (whole bag).
MAL_SELECTION_MODES = ("schedule", "all")


@META_ARCH_REGISTRY.register()
class MALRetinaNet(RetinaNet):
    """RetinaNet trained with MAL's anchor bags, selection and depression.

    Keyword-only arguments (defaults: docs/methods.md#mal-defaults) in addition to ``RetinaNet``'s:

    Args:
        max_iter: ``T`` of ``lambda = t / T`` and of the depression schedule; configs interpolate
            ``train.max_iter``.
        anchor_bag_size: ``k`` anchors per bag (paper 50; code 40 for R50/R101, 50 for X101).
        bbox_reg_weight: ``beta`` in ``p_loc = exp(-beta * SmoothL1)`` (0.75).
        bag_smooth_l1_beta: Smooth-L1 transition point inside the bag likelihood (0.11). Not
            ``RetinaNet.smooth_l1_beta``, which MAL does not use.
        saturation_thresh: ``t1`` of the negative bag (0.6).
        pos_neg_alpha: weight of the positive term; the negative one gets ``1 - alpha`` (0.5).
        neg_gamma: focal exponent of the negative bag (2.0).
        selection: ``"schedule"`` (paper, ``m`` shrinks from ``k`` to 1) or ``"all"`` (released code).
        depression_schedule: ``"symmetric_step"`` (code default), ``"step"``, ``"constant"`` or
            ``"off"`` (docs/methods.md#mal-anchor-depression).
        depression_max_ratio: peak ``rho`` (0.5). depression_scale: factor on depressed positions (0.25).
        min_gt_size: GTs with a shorter side below this (px) get no bag (docs/methods.md#mal-edge-cases).
        gt_chunk_size: GTs per chunk of the (G, R) IoU matrices (docs/methods.md#mal-edge-cases).
        box2box_transform: defaults to ``Box2BoxTransform(weights=(10, 10, 5, 5))``; its weights are
            passed to the bag loss so training and inference decode deltas the same way.
        anchor_matcher: unused by MAL (bags replace IoU matching); accepted for config compatibility.
    """

    def __init__(
        self,
        *,
        max_iter: int,
        anchor_bag_size: int = 50,
        bbox_reg_weight: float = 0.75,
        bag_smooth_l1_beta: float = 0.11,
        saturation_thresh: float = 0.6,
        pos_neg_alpha: float = 0.5,
        neg_gamma: float = 2.0,
        selection: str = "schedule",
        depression_schedule: str = "symmetric_step",
        depression_max_ratio: float = 0.5,
        depression_scale: float = 0.25,
        min_gt_size: float = 1.0,
        gt_chunk_size: int = 64,
        box2box_transform: Optional[Box2BoxTransform] = None,
        anchor_matcher=None,
        **kwargs,
    ):
        if box2box_transform is None:
            box2box_transform = Box2BoxTransform(weights=MAL_BOX_CODER_WEIGHTS)
        super().__init__(box2box_transform=box2box_transform, anchor_matcher=anchor_matcher, **kwargs)
        if int(max_iter) <= 0:
            raise ValueError(
                f"MALRetinaNet needs the training horizon max_iter > 0 (got {max_iter!r}); "
                'configs set model.max_iter="${..train.max_iter}".'
            )
        if selection not in MAL_SELECTION_MODES:
            raise ValueError(f"selection must be one of {MAL_SELECTION_MODES}, got {selection!r}")
        if depression_schedule not in DEPRESSION_SCHEDULES:
            raise ValueError(f"depression_schedule must be one of {DEPRESSION_SCHEDULES}, got {depression_schedule!r}")
        if anchor_bag_size < 1:
            raise ValueError(f"anchor_bag_size must be >= 1, got {anchor_bag_size}")
        self.max_iter = int(max_iter)
        self.anchor_bag_size = int(anchor_bag_size)
        self.bbox_reg_weight = float(bbox_reg_weight)
        self.bag_smooth_l1_beta = float(bag_smooth_l1_beta)
        self.saturation_thresh = float(saturation_thresh)
        self.pos_neg_alpha = float(pos_neg_alpha)
        self.neg_gamma = float(neg_gamma)
        self.selection = selection
        self.min_gt_size = float(min_gt_size)
        self.gt_chunk_size = int(gt_chunk_size)
        # Parameter-free module: the state_dict keys stay RetinaNet's.
        self.depression = AnchorDepression(
            schedule=depression_schedule, max_ratio=depression_max_ratio, scale=depression_scale
        )
        self._fallback_iter = 0

    # ----------------------------------------------------------------------------- iteration
    def set_iter(self, iteration: int) -> None:
        """Iteration used when no EventStorage is active (unit tests, scripts); docs/methods.md#training-progress."""
        self._fallback_iter = int(iteration)

    def current_iter(self) -> int:
        """``t``: ``get_event_storage().iter`` inside a trainer, else the value of :meth:`set_iter` (0)."""
        storage = current_storage()
        return int(storage.iter) if storage is not None else self._fallback_iter

    def selection_progress(self, iteration: int) -> Optional[float]:
        """``lambda = clamp(t / T, 0, 1)`` for ``selection="schedule"``; None (whole bag) for ``"all"``."""
        if self.selection == "all":
            return None
        return min(max(iteration / self.max_iter, 0.0), 1.0)

    # ----------------------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """As ``DenseDetector.forward``; in training the features are depressed before the head.

        The head has to see the depressed features, and ``DenseDetector.forward`` runs the head
        before ``forward_training``, so the training branch is restated here (five lines); inference
        is the inherited one unchanged (docs/methods.md#mal-defaults: no depression, zero extra cost).
        """
        if not self.training:
            return super().forward(batched_inputs)
        assert "instances" in batched_inputs[0], "Instance annotations are missing in training!"
        images, features, predictions, gt_instances, iteration, ratio = self._training_predictions(batched_inputs)
        losses = self.forward_training(images, features, predictions, gt_instances, iteration=iteration)
        put_scalars(smoothing_hint=False, **{"mal/depression_ratio": ratio})
        return losses

    def _training_predictions(self, batched_inputs):
        """Backbone, depression at iteration ``t`` and head, as in training: (images, features,
        predictions, gt_instances, t, depression ratio)."""
        images, features, gt_instances = training_inputs(self, batched_inputs)
        iteration = self.current_iter()
        features, ratio = self.depression(features, iteration=iteration, max_iter=self.max_iter)
        return images, features, self.head(features), gt_instances, iteration, ratio

    def forward_training(
        self,
        images: ImageList,
        features: List[Tensor],
        predictions: List[List[Tensor]],
        gt_instances: List[Instances],
        *,
        iteration: Optional[int] = None,
    ) -> Dict[str, Tensor]:
        """Bag losses instead of ``label_anchors`` + focal/Smooth-L1.

        Args:
            features: list over levels of (N, C, H_l, W_l) (already depressed); only their sizes
                are used, for the anchors.
            predictions: ``[logits per level (N, A*K, H_l, W_l)], [deltas per level (N, A*4, H_l, W_l)]``.
            gt_instances: N ``Instances`` with ``gt_boxes`` (G_i, 4) and ``gt_classes`` (G_i,).
            iteration: ``t``; read from the EventStorage / :meth:`set_iter` when None.
        """
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(predictions, [self.num_classes, 4])
        anchors = self.anchor_generator(features)
        if iteration is None:
            iteration = self.current_iter()
        return self.losses(anchors, pred_logits, gt_instances, pred_anchor_deltas, iteration=iteration)

    def losses(
        self,
        anchors: List[Boxes],
        pred_logits: List[Tensor],
        gt_instances: List[Instances],
        pred_anchor_deltas: List[Tensor],
        *,
        iteration: int,
    ) -> Dict[str, Tensor]:
        """``{"loss_mal_pos", "loss_mal_neg"}`` from the pure layer (docs/methods.md#mal-bag-losses).

        Args:
            anchors: list over levels of ``Boxes`` (H_l*W_l*A, 4); the same for every image.
            pred_logits: list over levels of (N, H_l*W_l*A, K).
            gt_instances: N ``Instances`` (G_i may be 0).
            pred_anchor_deltas: list over levels of (N, H_l*W_l*A, 4), in the (10, 10, 5, 5) encoding.
            iteration: ``t`` for ``lambda = t / T``.
        """
        out = mal_losses(
            torch.cat(pred_logits, dim=1),
            torch.cat(pred_anchor_deltas, dim=1),
            Boxes.cat(anchors).tensor,
            [x.gt_boxes.tensor for x in gt_instances],
            [x.gt_classes for x in gt_instances],
            bag_size=self.anchor_bag_size,
            progress=self.selection_progress(iteration),
            saturation_thresh=self.saturation_thresh,
            pos_neg_alpha=self.pos_neg_alpha,
            neg_gamma=self.neg_gamma,
            **self._bag_kwargs(),
        )
        # Statistics, not losses: the trainer sums every value of the returned dict.
        num_selected = out.pop("num_selected")
        # The positives of MAL are the selected anchors of every bag.
        log_score_iou_correlation(out.pop("positive_scores"), out.pop("positive_ious"))
        # Schedule values, not noisy measurements: log each step's value, not a 20-step median.
        put_scalars(smoothing_hint=False, **{"mal/num_selected_per_bag": float(num_selected)})
        return out

    def _bag_kwargs(self) -> Dict:
        """Bag parameters shared by the loss and :meth:`assignment`."""
        return dict(
            bbox_reg_weight=self.bbox_reg_weight,
            smooth_l1_beta=self.bag_smooth_l1_beta,
            box_coder_weights=tuple(self.box2box_transform.weights),
            min_gt_size=self.min_gt_size,
            gt_chunk_size=self.gt_chunk_size,
        )

    # ----------------------------------------------------------------------------- assignment
    @torch.no_grad()
    def assignment(self, batched_inputs: List[Dict[str, Tensor]]) -> List[ImageAssignment]:
        """MAL's positives (``alignment_det.modeling.assignment`` contract): group ``bag`` (the top-k
        anchors by IoU of each GT) and group ``selected`` (the ``m(lambda)`` anchors of each bag with the
        highest joint confidence ``q`` on the depressed features of iteration :meth:`current_iter`),
        both through :func:`~alignment_det.losses.mal_loss.select_bag_anchors`, the loss's own code."""
        images, features, predictions, gt_instances, iteration, ratio = self._training_predictions(batched_inputs)
        pred_logits, pred_deltas = self._transpose_dense_predictions(predictions, [self.num_classes, 4])
        anchors = self.anchor_generator(features)
        all_anchors = Boxes.cat(anchors).tensor
        level_ids = level_ids_of([len(a) for a in anchors], device=all_anchors.device)
        cls_prob = torch.sigmoid(torch.cat(pred_logits, dim=1).float())
        deltas = torch.cat(pred_deltas, dim=1).float()
        k_bag = effective_bag_size(self.anchor_bag_size, all_anchors.shape[0])
        m = selection_count(k_bag, self.selection_progress(iteration))
        info = {"iteration": float(iteration), "bag_size": float(k_bag), "num_selected": float(m),
                "depression_ratio": float(ratio)}
        out = []
        for i, inst in enumerate(gt_instances):
            sel = select_bag_anchors(
                cls_prob[i], deltas[i], all_anchors.float(), inst.gt_boxes.tensor.float(), inst.gt_classes,
                bag_size=k_bag, num_selected=m, **self._bag_kwargs(),
            )
            groups = {
                name: positive_group(idx, sel.gt_idx[:, None].expand_as(idx), all_anchors, level_ids)
                for name, idx in (("bag", sel.bags), ("selected", sel.selected))
            }
            out.append(make_image_assignment(images.image_sizes[i], inst, groups, self.head_in_features, info))
        return out

