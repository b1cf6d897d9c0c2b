"""Export DATE's inference as one graph: image tensor in, (boxes, scores, classes) out.

DATE needs no NMS (docs/methods.md#date-inference), so its whole inference path (normalisation, backbone, shared
towers, o2o predictor + 3DMF, per-level top-k, merge) is plain tensor ops with static shapes and
exports as one graph. The o2m predictors are dropped from the exported module (docs/methods.md#date-inference: not part of the
inference graph; the training checkpoint still holds them).

    model.eval()
    ep = export_program(model, example_images)               # torch.export.ExportedProgram
    boxes, scores, classes = ep.module()(images)              # (N, D, 4), (N, D), (N, D)
    valid = classes >= 0                                      # padding rows: score 0, class -1

or ``export_torchscript(model, example_images, "date.ts")`` for a TorchScript trace (deprecated by
torch >= 2.9 but still supported). The graph is specialised to the example's image size (per-level
top-k sizes are constants): export at the deployment input size, H and W multiples of the backbone's
``size_divisibility``.
"""
import copy
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ["DATEExport", "inference_only_copy", "export_program", "export_torchscript"]


def inference_only_copy(model: nn.Module) -> nn.Module:
    """A shallow copy of a DATE model without its o2m modules (``o2m_*`` in the model and the head).

    Parameters and buffers are shared with ``model`` (no memory is copied); only the module
    dictionaries are new, so ``model`` itself is unchanged. The copy supports
    :meth:`DATE.export_forward` (and ``forward`` in eval mode), not training.
    """
    clone = copy.copy(model)
    clone._modules = {k: v for k, v in model._modules.items() if not k.startswith("o2m_")}
    clone._parameters = dict(model._parameters)
    clone._buffers = dict(model._buffers)
    head = copy.copy(model.head)
    head._modules = {k: v for k, v in model.head._modules.items() if not k.startswith("o2m_")}
    head._parameters = dict(model.head._parameters)
    head._buffers = dict(model.head._buffers)
    clone._modules["head"] = head
    return clone.eval()


class DATEExport(nn.Module):
    """(N, 3, H, W) raw pixels -> boxes (N, D, 4), scores (N, D), classes (N, D), through
    :meth:`DATE.export_forward` of an inference-only copy of ``model``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = inference_only_copy(model)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.model.export_forward(images)


def export_program(model: nn.Module, example_images: Tensor):
    """``torch.export`` of :class:`DATEExport` (model put in eval mode)."""
    model.eval()
    with torch.no_grad():
        return torch.export.export(DATEExport(model).eval(), (example_images,))


def export_torchscript(model: nn.Module, example_images: Tensor, path: Optional[str] = None):
    """``torch.jit.trace`` of :class:`DATEExport` (model put in eval mode); saved to ``path`` when given."""
    model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(DATEExport(model).eval(), (example_images,), check_trace=False)
    if path is not None:
        traced.save(path)
    return traced
