"""Assignment and losses in fp32 under autocast, for every dense detector of the zoo.

Under ``torch.autocast`` a detector's head returns fp16 / bf16 predictions. Label assignment and
the losses then meet what half precision does badly: the exp of box decoding, logarithms,
histograms over gradient norms (GHM), sums over tens of thousands of priors, epsilons below fp16's
resolution (6e-8 is 0 in fp16), and in-place writes that need equal dtypes (fvcore's ``giou_loss``
under Detectron2's ``FCOS.losses`` raises "Index put requires the source and destination dtypes
match"). mmdetection solves this with ``@force_fp32`` on its loss functions; here one mixin does
the same at ``forward_training``, the step every dense detector goes through after its head: the
predictions are cast to fp32 and autocast is switched off until the loss dict is returned. The
backbone and the head, where the speed-up is, stay in the autocast dtype.
"""
from typing import Any

import torch

__all__ = ["Float32Training", "autocast_off", "to_float32"]


def to_float32(tree: Any) -> Any:
    """``tree`` with every floating-point tensor cast to fp32 (lists, tuples and dicts walked;
    integer tensors and other leaves unchanged)."""
    if isinstance(tree, torch.Tensor):
        return tree.float() if tree.is_floating_point() else tree
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_float32(t) for t in tree)
    if isinstance(tree, dict):
        return {k: to_float32(v) for k, v in tree.items()}
    return tree


def autocast_off(device: torch.device) -> torch.autocast:
    """A context in which autocast of ``device``'s type does nothing."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


class Float32Training:
    """Mixin before a ``DenseDetector`` subclass: ``forward_training`` (assignment + losses) runs
    in fp32 with autocast off, whatever dtype the head produced. Without autocast it changes
    nothing (the predictions are already fp32)."""

    def forward_training(self, images, features, predictions, gt_instances, **kwargs):
        with autocast_off(images.tensor.device):
            return super().forward_training(images, features, to_float32(predictions), gt_instances, **kwargs)
