"""Exponential moving average of a model's weights (``train.model_ema``).

``train.model_ema = dict(enabled=False, decay=0.9998, use_ema_for_eval=True)``:

* ``decay`` 0.9998 is mmdetection's EMA default (``ExpMomentumEMA(momentum=0.0002)``, the
  EMA of its RTMDet / YOLOX configs, where momentum = 1 - decay); it is applied as a constant,
  as detrex's and d2go's ``model_ema`` do, without mmdetection's exponential warm-up of the
  momentum. After every optimizer step::

      ema = decay * ema + (1 - decay) * weight

  for every floating-point entry of the model's ``state_dict`` (parameters and buffers such
  as BatchNorm statistics, as d2go/detrex); integer buffers (``num_batches_tracked``) are
  copied. The EMA is kept in fp32 on the model's device, whatever the model's dtype.
* it starts as a copy of the weights training starts from (``train.init_checkpoint`` or
  scratch), and it is saved in every checkpoint under ``model_ema``, so ``--resume``
  continues it exactly;
* ``use_ema_for_eval``: the periodic and final evaluations of a run, and ``--eval-only`` on a
  checkpoint that holds ``model_ema``, use the EMA weights (False: the raw weights).
"""
import contextlib
import logging
from typing import Dict

import torch
from detectron2.engine import HookBase
from torch import nn

logger = logging.getLogger("alignment_det")

__all__ = ["EMA_CHECKPOINT_KEY", "ModelEMA", "ModelEMAHook"]

#: Key of the EMA weights in a checkpoint file.
EMA_CHECKPOINT_KEY = "model_ema"


class ModelEMA:
    """EMA of a model's ``state_dict``; a checkpointable (``state_dict`` / ``load_state_dict``).

    Every ``model`` argument below is the module itself, not its DDP wrapper (whose
    ``state_dict`` keys carry a ``module.`` prefix).

    Args (keyword-only):
        decay: d in ``ema = d * ema + (1 - d) * weight``, 0 <= d < 1.
    """

    def __init__(self, *, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.model_ema.decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.state: Dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Start the average at the model's current weights (fp32, on their device)."""
        self.state = {
            k: (v.detach().clone().float() if v.is_floating_point() else v.detach().clone())
            for k, v in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards the model's current weights."""
        for k, v in model.state_dict().items():
            avg = self.state[k]
            if avg.is_floating_point():
                avg.mul_(self.decay).add_(v.detach().float(), alpha=1.0 - self.decay)
            else:
                avg.copy_(v)

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module):
        """Run the ``with`` block with the EMA weights in ``model``, then put its own back."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        load_ema_weights(model, self.state)
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.state = {k: v.clone() for k, v in state.items()}


@torch.no_grad()
def load_ema_weights(model: nn.Module, ema_state: Dict[str, torch.Tensor]) -> None:
    """Copy EMA weights into ``model`` (cast to each entry's dtype); every key must be there."""
    current = model.state_dict()
    missing = sorted(set(current) - set(ema_state))
    if missing:
        raise KeyError(f"The EMA weights lack {len(missing)} of the model's entries (e.g. {missing[:3]}).")
    model.load_state_dict({k: ema_state[k].to(dtype=v.dtype, device=v.device) for k, v in current.items()})


class ModelEMAHook(HookBase):
    """Start the EMA at ``before_train`` (unless a resumed checkpoint brought one) and update it
    after every step. Registered before the checkpointer and evaluation hooks, so the EMA they
    save and evaluate includes the step just taken."""

    def __init__(self, ema: ModelEMA, model: nn.Module):
        self.ema = ema
        self.model = model

    def before_train(self):
        if not self.ema.state:
            logger.info("Model EMA (decay %s) starts from the current weights.", self.ema.decay)
            self.ema.reset(self.model)

    def after_step(self):
        self.ema.update(self.model)
