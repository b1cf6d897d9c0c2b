"""HCRA-C and HCRA-R, the two losses of HCRAL (arXiv 2408.17182; docs/methods.md#hcra-c).

Every modulating factor is computed without gradient (the paper detaches them all); only the BCE
(HCRA-C) and the GIoU term (HCRA-R) carry gradient.

**HCRA-C** (replaces focal loss), element-wise over (prior r, class k), targets ``y`` in {0, 1},
``p = σ(x)``, ``u_r`` the IoU of the prior's predicted box (:func:`prior_ious`)::

    β      = GHM gradient-density weight of |p - y|           (:class:`~.ghm.GHMHarmonizer`)
    ω      = u                              if y = 1
           = clamp(1 - u·(u - μ)², 0, 1)    if y = 0           (μ = 0.7; literal formula)
    RCI    = p - u + α_c
    f(RCI) = σ(-θ·RCI) if RCI < 0 else 0    positives, "mirrored" (default)
           = σ(+θ·RCI) if p > u else 0      positives, "literal" (paper Eq. 5 as printed)
           = 1                              negatives
    L_cls  = (1 / tot) · Σ β·ω·f(RCI)·BCEWithLogits(x, y)

Why mirrored: Eq. 5 as printed gives zero loss to every positive whose score is below its IoU, which
at initialisation (p ≈ 0.01) is every positive, so training cannot start; mirrored weights
positives the more the further their score lags their IoU and fades to 0 once it has caught up,
which is the paper's stated motivation. ``use_rci=False`` drops the factor (Table 1 "no RCI").
``use_iou_conditioning=False`` sets ω = 1 (no paper row; a diagnostic): with ``use_rci=False`` too,
HCRA-C is mmdet's GHM-C, the harmoniser alone.

**HCRA-R** (replaces GIoU), over positives ``i`` with ``IoU_i`` = IoU(predicted box, GT) and
``s_i`` = σ(logit of the assigned class)::

    t_i      = exp(-IoU_i² / γ)                       γ = 1.5 (ATSS), 1.2 (RetinaNet)
    R_i      = ρ²(centres) / c²                      DIoU penalty (the text prints ρ/c²)
    CF_reg,i = t_i · exp(R_i) · IoU_i
    a_i      = max(s_i + α, 0)                        α = -0.1 (Table 3; the prose says 0.1)
    RCI_reg,i = (a_i² + IoU_i² + ep) / (2·a_i·IoU_i + ep)   if s_i - IoU_i + α >= 0, else its reciprocal
    r̄        <- (1 - m)·r̄ + m·mean_i RCI_reg,i      over all positives of the batch (all ranks)
    w_i      = RCI_reg,i / r̄ · CF_reg,i
    L_reg    = Σ_i w_i·(1 - GIoU_i)                    (the caller multiplies by λ_reg / max(1, #pos))

Readings (docs/methods.md#hcral-choices): ``r`` of Eq. 9/10 is a batch statistic, the per-sample weight is
``RCI_reg / r̄``; ``m = 0.01`` (unspecified in the paper); ``r̄`` starts at the first batch's mean and
is updated before it is used, so the current batch counts; a step without positives on any rank
leaves it unchanged. ``RCI_reg >= 1`` when ``a_i >= IoU_i`` (AM-GM), its reciprocal in (0, 1]
otherwise: it is positive always; ``CF_reg -> 0`` as ``IoU -> 0`` bounds the product.

Pure tensor layer: torch only.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from alignment_det.losses.ghm import GHMHarmonizer
from alignment_det.utils.boxes import aligned_diou_penalty, aligned_giou, aligned_iou, iou_targets, pairwise_iou
from alignment_det.utils.comm import all_reduce_mean
from alignment_det.utils.training_statistics import TrainingStatistics

__all__ = [
    "RCI_MODES",
    "prior_ious",
    "conditioning_factor",
    "residual_factor",
    "negative_conditioning",
    "positive_residual",
    "HCRACLoss",
    "HCRACOutput",
    "hcrar_factors",
    "HCRARLoss",
    "HCRAROutput",
]

RCI_MODES = ("mirrored", "literal")


@torch.no_grad()
def prior_ious(
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    positive: torch.Tensor,
    matched_gt_boxes: torch.Tensor,
    *,
    gt_chunk_size: int = 256,
) -> torch.Tensor:
    """``u`` of HCRA-C for one image: IoU of every prior's predicted box (docs/methods.md#hcra-c).

    Args:
        pred_boxes: (R, 4) XYXY predicted (final) boxes, detached inside.
        gt_boxes: (G, 4) XYXY, all GTs of the image; G may be 0.
        positive: (R,) bool, priors assigned to a GT.
        matched_gt_boxes: (R, 4) the GT each positive is assigned to (other rows are ignored).
        gt_chunk_size: GTs per chunk of the (R, chunk) IoU matrix.

    Returns:
        (R,) in [0, 1]: positives -> IoU with their assigned GT; others -> max IoU with any GT of the
        image (0 when G = 0).
    """
    pred = pred_boxes.detach().float()
    gts = gt_boxes.detach().float()
    R, G = pred.shape[0], gts.shape[0]
    u = pred.new_zeros(R)
    if G == 0 or R == 0:
        return u
    for start in range(0, G, gt_chunk_size):  # chunks of GTs, not single boxes
        u = torch.maximum(u, pairwise_iou(pred, gts[start : start + gt_chunk_size]).amax(dim=1))
    u[positive] = aligned_iou(pred[positive], matched_gt_boxes[positive].detach().float())
    return u.nan_to_num_(0.0).clamp_(0.0, 1.0)


def negative_conditioning(u: torch.Tensor, mu: float) -> torch.Tensor:
    """ω of a negative element: ``clamp(1 - u·(u - μ)², 0, 1)``, element-wise in ``u``."""
    return (1.0 - u * (u - mu) ** 2).clamp(0.0, 1.0)


def positive_residual(p: torch.Tensor, u: torch.Tensor, *, theta: float, alpha: float, mode: str) -> torch.Tensor:
    """``f(RCI)`` of a positive element, ``RCI = p - u + α``: see the module doc for the two modes."""
    if mode not in RCI_MODES:
        raise ValueError(f"rci_mode must be one of {RCI_MODES}, got {mode!r}")
    rci = p - u + alpha
    if mode == "mirrored":
        return torch.where(rci < 0, torch.sigmoid(-theta * rci), torch.zeros_like(rci))
    # Eq. 5 splits the cases on p > u; RCI > 0 would differ when α ≠ 0.
    return torch.where(p > u, torch.sigmoid(theta * rci), torch.zeros_like(rci))


def conditioning_factor(u: torch.Tensor, y: torch.Tensor, mu: float) -> torch.Tensor:
    """ω of HCRA-C (without β), element-wise: ``u`` where ``y = 1``, :func:`negative_conditioning`
    where ``y = 0``. Broadcasting shapes; returns their broadcast shape."""
    return torch.where(y > 0, u, negative_conditioning(u, mu))


def residual_factor(
    p: torch.Tensor, u: torch.Tensor, y: torch.Tensor, *, theta: float, alpha: float, mode: str
) -> torch.Tensor:
    """``f(RCI)`` of HCRA-C, element-wise: :func:`positive_residual` where ``y = 1``, 1 where ``y = 0``."""
    pos = positive_residual(p, u, theta=theta, alpha=alpha, mode=mode)
    return torch.where(y > 0, pos, torch.ones_like(pos))


class HCRACOutput(NamedTuple):
    loss: torch.Tensor  # () L_cls
    num_nonempty_bins: torch.Tensor  # () int64, GHM bins with at least one element this step


class HCRACLoss(nn.Module):
    """HCRA-C (module doc). Holds the GHM harmoniser, whose bin EMA is its only state (``ghm.acc``).

    Args (keyword-only): bins (20), momentum (0.75) of the GHM EMA, mu (0.7), theta (5), alpha (α_c,
    0), rci_mode ("mirrored" | "literal"), use_rci (True; False = Table 1's "no RCI"),
    use_iou_conditioning (True; False = ω of 1 everywhere, a diagnostic), ema_init
    ("first" | "zero"), beta_cap (None), sync (all-reduce GHM counts): see
    :class:`~alignment_det.losses.ghm.GHMHarmonizer` for the last four.
    """

    def __init__(
        self,
        *,
        bins: int = 20,
        momentum: float = 0.75,
        mu: float = 0.7,
        theta: float = 5.0,
        alpha: float = 0.0,
        rci_mode: str = "mirrored",
        use_rci: bool = True,
        use_iou_conditioning: bool = True,
        ema_init: str = "first",
        beta_cap: Optional[float] = None,
        sync: bool = True,
    ):
        super().__init__()
        if rci_mode not in RCI_MODES:
            raise ValueError(f"HCRACLoss: rci_mode must be one of {RCI_MODES}, got {rci_mode!r}")
        self.ghm = GHMHarmonizer(bins=bins, momentum=momentum, ema_init=ema_init, beta_cap=beta_cap, sync=sync)
        self.mu = float(mu)
        self.theta = float(theta)
        self.alpha = float(alpha)
        self.rci_mode = rci_mode
        self.use_rci = bool(use_rci)
        self.use_iou_conditioning = bool(use_iou_conditioning)

    def extra_repr(self) -> str:
        return (
            f"mu={self.mu}, theta={self.theta}, alpha={self.alpha}, rci_mode={self.rci_mode!r}, use_rci={self.use_rci}, "
            f"use_iou_conditioning={self.use_iou_conditioning}"
        )

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        prior_iou: torch.Tensor,
        valid: Optional[torch.Tensor] = None,
    ) -> HCRACOutput:
        """
        Args:
            logits: (..., K) class logits, e.g. (N, R, K).
            targets: (..., K) in {0, 1} (one-hot of the assigned class, all 0 for background).
            prior_iou: (...) ``u`` per prior, e.g. (N, R), from :func:`prior_ious`.
            valid: (...) bool, priors that count (RetinaNet's ignored anchors are False); None = all.

        Returns:
            :class:`HCRACOutput`, ``loss`` = L_cls (a scalar with gradient into ``logits``).
        """
        if logits.shape != targets.shape:
            raise ValueError(f"HCRACLoss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
        if prior_iou.shape != logits.shape[:-1]:
            raise ValueError(f"HCRACLoss: prior_iou must have shape {tuple(logits.shape[:-1])}, got {tuple(prior_iou.shape)}")
        x = logits.float()
        y = targets.to(x.dtype)
        with torch.no_grad():
            p = torch.sigmoid(x.detach())
            u = prior_iou.detach().to(x.dtype)
            ghm = self.ghm((p - y).abs(), None if valid is None else valid[..., None])
            # ω·f(RCI) is ω_neg(u) (f = 1) for every negative element: one value per prior, so the
            # (..., K) weight is β times a broadcast, and only the few positive elements are redone.
            pos = (y > 0).nonzero(as_tuple=True)
            u_pos = u[pos[:-1]]
            if self.use_iou_conditioning:
                weight = ghm.beta * negative_conditioning(u, self.mu)[..., None]
                w_pos = u_pos  # ω of a positive
            else:  # ω = 1 for every element
                weight = ghm.beta.clone()
                w_pos = torch.ones_like(u_pos)
            if self.use_rci:
                w_pos = w_pos * positive_residual(p[pos], u_pos, theta=self.theta, alpha=self.alpha, mode=self.rci_mode)
            weight[pos] = ghm.beta[pos] * w_pos
        loss = F.binary_cross_entropy_with_logits(x, y, weight=weight, reduction="sum") / ghm.tot.clamp(min=1.0)
        return HCRACOutput(loss, ghm.num_nonempty_bins)


@torch.no_grad()
def hcrar_factors(
    pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, scores: torch.Tensor, *, gamma: float, alpha: float, ep: float
):
    """Detached factors of HCRA-R for P positives.

    Args:
        pred_boxes, gt_boxes: (P, 4) XYXY; scores: (P,) ``s_i``, the probability of the assigned class.

    Returns:
        iou (P,), cf_reg (P,) = ``t·exp(R)·IoU``, rci_reg (P,) (module doc), all without gradient.
    """
    pred = pred_boxes.detach().float()
    gt = gt_boxes.detach().float()
    iou = iou_targets(pred, gt)
    t = torch.exp(-(iou**2) / gamma)
    cf = t * torch.exp(aligned_diou_penalty(pred, gt)) * iou
    s = scores.detach().float()
    a = (s + alpha).clamp(min=0.0)
    ratio = (a**2 + iou**2 + ep) / (2.0 * a * iou + ep)
    rci = torch.where(s - iou + alpha >= 0, ratio, 1.0 / ratio)
    return iou, cf, rci


class HCRAROutput(NamedTuple):
    loss_sum: torch.Tensor  # () Σ w_i (1 - GIoU_i); the caller applies λ_reg / max(1, #pos)
    running_mean: torch.Tensor  # () r̄ used for this step's weights
    iou: torch.Tensor  # (P,) detached IoU of the predicted boxes (the IoU-branch target)


class HCRARLoss(TrainingStatistics):
    """HCRA-R (module doc) with the running mean ``r̄`` of RCI_reg as state.

    Args (keyword-only): gamma (1.5 ATSS / 1.2 RetinaNet), alpha (-0.1), ep (1e-3), momentum (``m``,
    0.01), sync (all-reduce the batch mean across ranks).

    Buffers (persistent): ``running_mean`` () float32 and ``num_updates`` () int64. They change only
    in ``training`` mode.
    """

    def __init__(self, *, gamma: float = 1.5, alpha: float = -0.1, ep: float = 1e-3, momentum: float = 0.01, sync: bool = True):
        super().__init__()
        if float(gamma) <= 0:
            raise ValueError(f"HCRARLoss: gamma must be > 0, got {gamma}")
        if float(ep) <= 0:
            raise ValueError(f"HCRARLoss: ep must be > 0 (it keeps RCI_reg finite), got {ep}")
        if not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"HCRARLoss: momentum must be in (0, 1], got {momentum}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.ep = float(ep)
        self.momentum = float(momentum)
        self.sync = bool(sync)
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float32), persistent=True)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64), persistent=True)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, ep={self.ep}, momentum={self.momentum}"

    def forward(self, pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, scores: torch.Tensor) -> HCRAROutput:
        """
        Args:
            pred_boxes: (P, 4) XYXY predicted boxes of the positives, with gradient.
            gt_boxes: (P, 4) XYXY their assigned GTs.
            scores: (P,) probability of the assigned class (detached inside).
        """
        if pred_boxes.shape != gt_boxes.shape or pred_boxes.shape[-1:] != (4,) or scores.shape != pred_boxes.shape[:1]:
            raise ValueError(
                f"HCRARLoss: expected pred_boxes (P, 4), gt_boxes (P, 4), scores (P,), got {tuple(pred_boxes.shape)}, "
                f"{tuple(gt_boxes.shape)}, {tuple(scores.shape)}"
            )
        iou, cf, rci = hcrar_factors(pred_boxes, gt_boxes, scores, gamma=self.gamma, alpha=self.alpha, ep=self.ep)
        with torch.no_grad():
            stats = torch.stack([rci.sum(), rci.new_tensor(float(rci.numel()))])
            if self.sync:
                stats = all_reduce_mean(stats)
            total, count = stats.unbind()
            batch_mean = total / count.clamp(min=1.0)
            first = self.num_updates == 0
            new = torch.where(first, batch_mean, (1.0 - self.momentum) * self.running_mean + self.momentum * batch_mean)
            has = count > 0
            mean = torch.where(has, new, self.running_mean)
            if self.training:
                self.running_mean.copy_(mean)
                self.num_updates.add_(has.long())
            weight = rci / mean.clamp(min=torch.finfo(torch.float32).tiny) * cf
        giou = aligned_giou(pred_boxes.float(), gt_boxes.detach().float())
        return HCRAROutput((weight * (1.0 - giou)).sum(), mean, iou)
