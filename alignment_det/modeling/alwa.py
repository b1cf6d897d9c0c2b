"""ALWA for any Detectron2 detector: attach the controller to a built model.

``with_alwa(model, cls_keys=..., reg_keys=...)`` adds :class:`~alignment_det.losses.alwa_weighting.ALWA`
as the submodule ``model.alwa`` and registers a forward hook on ``model`` that, in
training, replaces the returned loss dict by ``model.alwa(loss_dict)`` and logs the
weight as ``alwa_weight``. It returns the same object, so the class (RetinaNet, FCOS,
GeneralizedRCNN, a project meta-architecture) and every existing state-dict key are
unchanged; only ``alwa.{alpha,cls_window,reg_window,window_fill}`` are added (spec:
docs/methods.md#alwa).

Configs: one design for every ALWA config
-----------------------------------------
An ALWA config is the baseline's ``model`` node with ALWA added *beside* the detector's keys,
never around them, by :func:`add_alwa`::

    from alignment_det.modeling.alwa import add_alwa
    from .retinanet_R50 import dataloader, lr_multiplier, model, optimizer, train

    model = add_alwa(model, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"])  # other settings: the paper's

which rewrites the node to

    model._target_ = build_with_alwa                    # builds the detector, then with_alwa()
    model.detector_class = "detectron2...RetinaNet"     # the node's former _target_
    model.alwa = {cls_keys: [...], reg_keys: [...], variant: ..., lambda0, period, stats_on, sync}
    model.<every detector key, unchanged>

So ``model.num_classes=K``, ``model.box_reg_loss_type=giou`` and README's dataset recipe read
exactly as for the baseline, interpolations inside the detector node (``${..num_classes}``,
MAL's ``${..train.max_iter}``) resolve as before, and ALWA's own keys are ``model.alwa.*``
(``model.alwa.variant=ALWA_1 model.alwa.period=200``). ``instantiate(cfg.model)`` still
returns the complete, hooked detector, so every tool that builds ``cfg.model`` (Detectron2's
``lazyconfig_train_net.py``, the model zoo, benchmarks, export) gets ALWA without knowing
about it. The override checks of ``alignment_det.config`` follow
``build_with_alwa.forwards_kwargs_to`` to the detector's signature, so its arguments left
at their defaults (``model.test_score_thresh``) are valid override keys too.

(An earlier design wrapped the node, ``L(with_alwa)(model=<detector node>)``, which hid the
detector's keys under ``model.model.*`` and broke ``model.num_classes=K``.)

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

ALWA's state (α, the partial windows) is in persistent buffers, hence in every checkpoint.
"""
from __future__ import annotations

import inspect
from typing import Mapping, Sequence, Union

from detectron2.utils.registry import _convert_target_to_string, locate
from torch import nn

from alignment_det.losses.alwa_weighting import ALWA

from .events import put_scalars

__all__ = ["with_alwa", "get_alwa", "add_alwa", "build_with_alwa", "ALWA_WEIGHT_KEY"]

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
    alpha_init: float = 1.0,
    adapt: bool = True,
) -> nn.Module:
    """Attach ALWA to ``model`` in place and return ``model`` (same object, same class).

    Args:
        model: a detector whose training forward returns a loss dict (name -> scalar tensor).
            Not a DDP wrapper: attach before wrapping, so the hook and the ``alwa.*``
            checkpoint keys are on the inner module.
        cls_keys, reg_keys, variant, lambda0, period, stats_on, sync, alpha_init, adapt: as
            :class:`~alignment_det.losses.alwa_weighting.ALWA` (defaults: docs/methods.md#alwa-defaults, the
            official code's ALWA_2, λ0 = 1, C = 100, statistics on weighted losses, α from 1, adapted).
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
        period=period, stats_on=stats_on, sync=sync, alpha_init=alpha_init, adapt=adapt,
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


def build_with_alwa(*, detector_class: str, alwa: Mapping, **detector_args) -> nn.Module:
    """LazyCall target of an ALWA config's ``model`` node (see the module docstring):
    ``with_alwa(detector_class(**detector_args), **alwa)``.

    Args:
        detector_class: dotted path (or the class) of the detector, e.g.
            ``"detectron2.modeling.meta_arch.retinanet.RetinaNet"``.
        alwa: keyword arguments of :func:`with_alwa` (``cls_keys``, ``reg_keys``, ``variant``, ...).
        detector_args: the detector's own constructor arguments (``backbone``, ``num_classes``, ...).
    """
    cls = locate(detector_class) if isinstance(detector_class, str) else detector_class
    return with_alwa(cls(**detector_args), **dict(alwa))


# The config checks (alignment_det.config) read the detector's signature through this.
build_with_alwa.forwards_kwargs_to = "detector_class"


def add_alwa(model_node, **alwa_args):
    """Add ALWA to a detector's LazyCall node in place and return it (the config design of
    the module docstring). ``alwa_args`` are :func:`with_alwa`'s keyword arguments; those not
    given are written into ``model.alwa`` at :func:`with_alwa`'s defaults (the paper's settings),
    so a config states only its loss keys and what it changes, and every setting is still a key
    that an override (``model.alwa.period=200``) and the saved config show.

    Raises:
        ValueError: if the node already has ALWA.
    """
    if "alwa" in model_node or "detector_class" in model_node:
        raise ValueError("add_alwa: this model node already has ALWA (model.alwa); add it once")
    target = model_node._target_
    model_node.detector_class = target if isinstance(target, str) else _convert_target_to_string(target)
    model_node._target_ = build_with_alwa
    defaults = {
        name: p.default
        for name, p in inspect.signature(with_alwa).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }
    model_node.alwa = {**defaults, **alwa_args}
    return model_node
