"""ALWA for any Detectron2 detector: attach the controller to a built model.

``with_alwa(model, cls_keys=..., reg_keys=...)`` adds :class:`~alignment_det.balancing.alwa.ALWA`
as the submodule ``model.alwa`` and registers a forward hook on ``model`` that, in
training, replaces the returned loss dict by ``model.alwa(loss_dict)`` and logs the
weight as ``alwa_weight``. It returns the same object, so the class (RetinaNet, FCOS,
GeneralizedRCNN, a project meta-architecture) and every existing state-dict key are
unchanged; only ``alwa.{alpha,cls_window,reg_window,window_fill}`` are added (spec:
ALGORITHMS.md §2).

In a LazyConfig, wrap the base model's node::

    model = L(with_alwa)(model=<base model node>, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"])

Overrides of the detector then read ``model.model.<key>``.

Why a forward hook rather than a subclass per detector or a wrapper module:

* a subclass would need one class per detector (and per project method) and would not
  compose with methods that themselves subclass RetinaNet;
* a wrapper ``nn.Module`` would prefix every checkpoint key (``model.backbone...``), so
  Detectron2 baseline checkpoints and model-zoo weights would no longer load, and code
  that reads ``model.backbone`` / ``model.num_classes`` would break;
* the hook sits on the detector itself, so DDP (which calls ``module(...)``) runs it on
  every rank inside the DDP forward, and ``copy.deepcopy`` / pickling keep it (the hook
  is a module-level function that reads ``module.alwa``, not a closure over the
  original object).
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

from torch import nn

from alignment_det.balancing.alwa import ALWA

from .events import put_scalars

__all__ = ["with_alwa", "get_alwa", "ALWA_WEIGHT_KEY"]

#: Name of the scalar logged to Detectron2's EventStorage every training step.
ALWA_WEIGHT_KEY = "alwa_weight"


def _alwa_forward_hook(module: nn.Module, args, output):
    """Forward hook: training loss dict -> ALWA-weighted loss dict (other outputs untouched)."""
    if not module.training or not isinstance(output, Mapping):
        return None  # inference results pass through unchanged
    alwa = module.alwa
    # The weight multiplied into this step's classification loss (the update at the end
    # of a full window only applies from the next step on).
    applied = alwa.weight
    weighted = alwa(output)
    # Exact per-step values (not a 20-step median), so the weight can be plotted and compared.
    put_scalars(smoothing_hint=False, **{ALWA_WEIGHT_KEY: applied})
    return weighted


def with_alwa(
    model: nn.Module,
    *,
    cls_keys: Union[str, Sequence[str]],
    reg_keys: Union[str, Sequence[str]],
    variant: str = "ALWA_2",
    lambda0: float = 1.0,
    period: int = 100,
    stats_on: str = "weighted",
    sync: bool = True,
) -> nn.Module:
    """Attach ALWA to ``model`` in place and return ``model`` (same object, same class).

    Args:
        model: a detector whose training forward returns a loss dict (name -> scalar tensor).
            Not a DDP wrapper: attach before wrapping, so the hook and the ``alwa.*``
            checkpoint keys are on the inner module.
        cls_keys, reg_keys, variant, lambda0, period, stats_on, sync: as
            :class:`~alignment_det.balancing.alwa.ALWA` (defaults: ALGORITHMS.md §2.3, the
            official code's ALWA_2, λ0 = 1, C = 100, statistics on weighted losses).
    Returns:
        ``model``, with submodule ``model.alwa`` (persistent buffers ``alpha`` ``()``,
        ``cls_window``/``reg_window`` ``(period,)``, ``window_fill`` ``()``) and a forward hook.
    """
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        raise TypeError(
            "with_alwa: pass the detector, not its DDP/DataParallel wrapper; attach ALWA before "
            "wrapping so that its buffers are checkpointed as alwa.* on the inner model"
        )
    if hasattr(model, "alwa"):
        raise ValueError(f"with_alwa: {type(model).__name__} already has an attribute 'alwa'; ALWA is attached once")
    alwa = ALWA(
        cls_keys=cls_keys, reg_keys=reg_keys, variant=variant, lambda0=lambda0,
        period=period, stats_on=stats_on, sync=sync,
    )
    # Follow the model's device when it is already placed (the trainer moves it later anyway).
    tensors = list(model.parameters()) or list(model.buffers())
    if tensors:
        alwa.to(tensors[0].device)
    alwa.train(model.training)
    model.alwa = alwa
    model.register_forward_hook(_alwa_forward_hook)
    return model


def get_alwa(model: nn.Module) -> ALWA:
    """The ALWA controller of ``model`` (unwrapping DDP); ``KeyError`` if it has none."""
    inner = getattr(model, "module", model)
    alwa = getattr(inner, "alwa", None)
    if not isinstance(alwa, ALWA):
        raise KeyError(f"{type(inner).__name__} has no ALWA controller; build it with with_alwa(...)")
    return alwa
