"""ALWA: Adaptive Loss Weight Adjustment ("Revisiting the loss weights in anchor-based
detection", arXiv 2103.09488; official code ``ywx-hub/ALWA`` branch ``master``): the loss-weight
controller. :mod:`alignment_det.modeling.alwa` attaches it to a Detectron2 detector.

Pure tensor layer: imports torch only (plus :mod:`alignment_det.utils.comm`).

The controller rescales the classification losses of a detector by a weight ``alpha``
that is re-estimated every ``period`` (``C``) training iterations from windows of loss
values (formulas and choices: docs/methods.md#alwa-weight-update, docs/methods.md#alwa-choices):

* every iteration: ``L_cls = alpha * lambda0 * L̂_cls`` and ``L_reg = lambda0 * L̂_reg``;
* the detached per-iteration sums of the weighted (``stats_on="weighted"``, paper and
  code) or raw (``stats_on="raw"``, opt-in fix) cls and reg losses are appended to two
  windows, after an all-reduce mean across ranks when ``sync`` is on;
* when the windows hold ``C`` values: ``mu, sigma = mean, std(ddof=1)`` of each window,
  ALWA_1: ``a = mu_c + sigma_c, b = mu_r + sigma_r``; ALWA_2: ``a = sigma_c, b = sigma_r``;
  if ``a > b`` and ``a > 0``: ``alpha <- b / a`` (replaced, not multiplied), otherwise
  ``alpha`` is unchanged; both windows are cleared. The new ``alpha`` applies from the
  **next** call on.

``alpha`` starts at ``alpha_init`` (1, the paper's). ``adapt=False`` never updates it: a constant
classification weight ``alpha_init·λ0``, the control that tells ALWA's adaptation from a fixed
lower weight (no paper row).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from alignment_det.utils.comm import all_reduce_mean, get_world_size

__all__ = ["ALWA"]

_VARIANTS = ("ALWA_1", "ALWA_2")
_STATS_ON = ("weighted", "raw")


def _as_keys(keys: Union[str, Sequence[str]], name: str) -> Tuple[str, ...]:
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if not keys:
        raise ValueError(f"ALWA: {name} must name at least one loss key, got an empty sequence")
    bad = [k for k in keys if not isinstance(k, str)]
    if bad:
        raise TypeError(f"ALWA: {name} must be strings (loss-dict keys), got {bad!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"ALWA: {name} contains duplicates: {list(keys)}")
    return keys


class ALWA(nn.Module):
    """Adaptive loss-weight controller applied to a detector's loss dict.

    Args (keyword-only):
        cls_keys: loss-dict keys weighted by ``alpha * lambda0`` (e.g. ``("loss_cls",)`` for
            RetinaNet, ``("loss_fcos_cls",)`` for FCOS, ``("loss_rpn_cls",)`` for an RPN).
            A single string is accepted as one key.
        reg_keys: keys weighted by ``lambda0`` (``("loss_box_reg",)``, ``("loss_fcos_loc",)``,
            ``("loss_rpn_loc",)``). Keys in neither list (e.g. FCOS centerness) pass through.
        variant: ``"ALWA_2"`` (std only; the official code's active default) or
            ``"ALWA_1"`` (mean + std; the variant the paper's prose favours).
        lambda0: base weight λ0 of both losses (> 0; paper recommends ≤ 1).
        period: window length ``C`` (≥ 2 because the std uses ddof = 1); paper: 100.
        stats_on: ``"weighted"`` (statistics on ``alpha·λ0·L̂_cls`` and ``λ0·L̂_reg``; faithful)
            or ``"raw"`` (statistics on ``L̂_cls``, ``L̂_reg``; opt-in fix, see below).
        sync: all-reduce (mean) each iteration's pair of window values across ranks before
            appending, so every rank holds the same windows and ``alpha``. A no-op without a
            process group. ``sync=False`` reproduces the official per-GPU ``alpha``.
        alpha_init: ``alpha`` before the first update (finite, > 0); the paper's is 1.
        adapt: ``False`` keeps ``alpha`` at ``alpha_init`` for good (no windows are filled): a
            constant-weight control, not ALWA.

    State (persistent buffers, hence in every checkpoint; a run stopped mid-window and
    resumed from its checkpoint produces exactly the same ``alpha`` sequence):
        ``alpha`` ``()`` float64, init 1; ``cls_window``, ``reg_window`` ``(period,)`` float64,
        slots ``[0, window_fill)`` valid; ``window_fill`` ``()`` int64.

    Per call in training mode (``self.training``): returns a new dict with the weighted
    losses (gradients flow through the losses; ``alpha`` is a buffer and carries none),
    appends one value to each window and, when the windows are full, updates ``alpha``.
    The per-iteration value is the **sum** over the listed keys. Loss values must be
    one-element tensors; an iteration whose (all-reduced) cls or reg value is non-finite is
    skipped in both windows, which therefore stay paired (with ``sync`` every rank skips
    the same iteration); the returned losses are still weighted and returned as they are.
    Zero-valued losses (batches without positives) are finite and enter the window (faithful).

    In eval mode (``model.eval()``) the dict is weighted with the current ``alpha`` but no
    state changes, so validation losses are on the training scale and evaluation never
    shifts the windows. The Detectron2 layer only calls the controller in training.

    Behaviour note (faithful to paper *and* code, docs/methods.md#alwa-weight-update): with
    ``stats_on="weighted"`` the statistics are taken on losses that already include
    ``alpha`` and ``alpha`` is *replaced* by ``b/a``, not multiplied. After one update the
    weighted classification spread is about the regression spread, so the next window
    often gives ``a ≈ b``; when ``a`` is marginally larger, ``alpha`` jumps back towards 1
    (``b/a ≈ 1``), and then down again to ``≈ sigma_r/sigma_c`` — ``alpha`` can oscillate
    between ≈1 and ≈ sigma_r/sigma_c. ``stats_on="raw"`` computes ``b/a`` on the raw losses
    and does not oscillate that way. Two further literal consequences of the formula: a
    reg window with zero spread (ALWA_2, ``b = 0``) sets ``alpha = 0``, and with weighted
    statistics ``alpha = 0`` then stays 0 (``a = 0`` → no update); with ``sync`` the
    all-reduce is a collective, so every rank must call the controller the same number of
    times (as DDP training does). If the controller sits inside a DDP model built with
    ``broadcast_buffers=True``, DDP overwrites every rank's buffers with rank 0's, which
    only matters for ``sync=False``; Detectron2 builds DDP with ``broadcast_buffers=False``.
    """

    alpha: torch.Tensor
    cls_window: torch.Tensor
    reg_window: torch.Tensor
    window_fill: torch.Tensor

    def __init__(
        self,
        *,
        cls_keys: Union[str, Sequence[str]],
        reg_keys: Union[str, Sequence[str]],
        variant: str = "ALWA_2",
        lambda0: float = 1.0,
        period: int = 100,
        stats_on: str = "weighted",
        sync: bool = True,
        alpha_init: float = 1.0,
        adapt: bool = True,
    ):
        super().__init__()
        self.cls_keys = _as_keys(cls_keys, "cls_keys")
        self.reg_keys = _as_keys(reg_keys, "reg_keys")
        both = sorted(set(self.cls_keys) & set(self.reg_keys))
        if both:
            raise ValueError(f"ALWA: keys {both} are in both cls_keys and reg_keys; each loss gets one weight")
        if variant not in _VARIANTS:
            raise ValueError(f"ALWA: unknown variant {variant!r}; use one of {list(_VARIANTS)}")
        if stats_on not in _STATS_ON:
            raise ValueError(f"ALWA: unknown stats_on {stats_on!r}; use one of {list(_STATS_ON)}")
        if isinstance(period, bool) or not isinstance(period, int) or period < 2:
            raise ValueError(
                f"ALWA: period (C) must be an int >= 2 because the window std uses ddof=1, got {period!r}; "
                "the paper uses 100 and recommends 100-500"
            )
        lambda0 = float(lambda0)
        if not (math.isfinite(lambda0) and lambda0 > 0):
            raise ValueError(f"ALWA: lambda0 must be a finite number > 0, got {lambda0!r}")
        alpha_init = float(alpha_init)
        if not (math.isfinite(alpha_init) and alpha_init > 0):
            raise ValueError(f"ALWA: alpha_init must be a finite number > 0, got {alpha_init!r}")
        self.variant = variant
        self.lambda0 = lambda0
        self.period = period
        self.stats_on = stats_on
        self.sync = bool(sync)
        self.adapt = bool(adapt)

        self.register_buffer("alpha", torch.full((), alpha_init, dtype=torch.float64), persistent=True)
        self.register_buffer("cls_window", torch.zeros(period, dtype=torch.float64), persistent=True)
        self.register_buffer("reg_window", torch.zeros(period, dtype=torch.float64), persistent=True)
        self.register_buffer("window_fill", torch.zeros((), dtype=torch.int64), persistent=True)

        # Diagnostics only (not checkpointed): statistics of the last full window and the
        # number of iterations skipped for non-finite values in this process.
        self.last_window_stats: Optional[Dict[str, float]] = None
        self.num_skipped: int = 0

    # ------------------------------------------------------------------ read-outs
    @property
    def weight(self) -> float:
        """Current ``alpha`` as a Python float (log it as ``alwa_weight``)."""
        return float(self.alpha.item())

    @property
    def cls_weight(self) -> float:
        """Effective classification weight ``alpha * lambda0`` applied in the next call."""
        return self.weight * self.lambda0

    def extra_repr(self) -> str:
        return (
            f"cls_keys={self.cls_keys}, reg_keys={self.reg_keys}, variant={self.variant!r}, "
            f"lambda0={self.lambda0}, period={self.period}, stats_on={self.stats_on!r}, sync={self.sync}, "
            f"adapt={self.adapt}"
        )

    # ------------------------------------------------------------------ main entry
    def forward(self, loss_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Weight ``loss_dict`` and, in training mode, update the windows / ``alpha``.

        Args:
            loss_dict: name -> one-element loss tensor (Detectron2's loss dict).
        Returns:
            a new dict with the same keys: cls keys × ``alpha·λ0``, reg keys × ``λ0``, others as given.
        """
        self._check(loss_dict)
        cls_scale = self.alpha.detach() * self.lambda0  # float64 scalar, no grad
        out = dict(loss_dict)
        for k in self.cls_keys:
            v = loss_dict[k]
            out[k] = v * cls_scale.to(device=v.device, dtype=v.dtype)
        for k in self.reg_keys:
            out[k] = loss_dict[k] * self.lambda0
        if self.training and self.adapt:
            self._observe(loss_dict, cls_scale)
        return out

    # No ``apply`` alias on purpose: ``nn.Module.apply(fn)`` recurses into children, so
    # overriding it would break ``model.apply(init_fn)`` on a detector holding this module.

    # ------------------------------------------------------------------ internals
    def _check(self, loss_dict: Mapping[str, torch.Tensor]) -> None:
        missing = [k for k in self.cls_keys + self.reg_keys if k not in loss_dict]
        if missing:
            raise KeyError(
                f"ALWA: loss dict lacks {missing}; expected cls_keys={list(self.cls_keys)} and "
                f"reg_keys={list(self.reg_keys)}, available keys: {sorted(loss_dict.keys())}. "
                "Set cls_keys/reg_keys to the names your detector's losses() returns."
            )
        for k in self.cls_keys + self.reg_keys:
            v = loss_dict[k]
            if not isinstance(v, torch.Tensor) or v.numel() != 1:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(f"ALWA: loss {k!r} must be a one-element tensor, got {shape}")

    @torch.no_grad()
    def _observe(self, loss_dict: Mapping[str, torch.Tensor], cls_scale: torch.Tensor) -> None:
        cls_sum = sum(loss_dict[k].detach().reshape(()).to(torch.float64) for k in self.cls_keys)
        reg_sum = sum(loss_dict[k].detach().reshape(()).to(torch.float64) for k in self.reg_keys)
        if self.stats_on == "weighted":
            cls_sum = cls_sum * cls_scale.to(cls_sum.device)
            reg_sum = reg_sum * self.lambda0
        pair = torch.stack([cls_sum, reg_sum])
        if self.sync and get_world_size() > 1:
            pair = all_reduce_mean(pair)
        cls_val, reg_val = pair.cpu().tolist()
        if not (math.isfinite(cls_val) and math.isfinite(reg_val)):
            self.num_skipped += 1
            return
        idx = int(self.window_fill.item())
        if not 0 <= idx < self.period:
            raise RuntimeError(
                f"ALWA: window_fill={idx} outside [0, {self.period}); the loaded state does not match period={self.period}"
            )
        self.cls_window[idx] = cls_val
        self.reg_window[idx] = reg_val
        self.window_fill.fill_(idx + 1)
        if idx + 1 == self.period:
            self._update_alpha()

    def _update_alpha(self) -> None:
        cls = self.cls_window.detach().cpu()
        reg = self.reg_window.detach().cpu()
        mu_c, sd_c = cls.mean().item(), cls.std(correction=1).item()
        mu_r, sd_r = reg.mean().item(), reg.std(correction=1).item()
        if self.variant == "ALWA_1":
            a, b = mu_c + sd_c, mu_r + sd_r
        else:  # ALWA_2
            a, b = sd_c, sd_r
        updated = a > b and a > 0
        if updated:
            self.alpha.fill_(b / a)
        self.last_window_stats = {
            "mu_cls": mu_c, "std_cls": sd_c, "mu_reg": mu_r, "std_reg": sd_r,
            "a": a, "b": b, "updated": float(updated), "alpha": self.weight,
        }
        self.cls_window.zero_()
        self.reg_window.zero_()
        self.window_fill.zero_()
