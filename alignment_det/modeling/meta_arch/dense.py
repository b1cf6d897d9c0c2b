"""Detectron2's RetinaNet and FCOS as the zoo's baselines and the methods' base classes, with
assignment and losses in fp32 under autocast (:class:`~alignment_det.modeling.precision.Float32Training`).

Modules, forward, inference and checkpoint keys are Detectron2's; a Detectron2 RetinaNet / FCOS
checkpoint loads unchanged. Every method derives from these, so a method and its baseline meet
autocast the same way.
"""
from detectron2.modeling.meta_arch.fcos import FCOS as D2FCOS
from detectron2.modeling.meta_arch.retinanet import RetinaNet as D2RetinaNet

from ..precision import Float32Training

__all__ = ["FCOS", "RetinaNet"]


class RetinaNet(Float32Training, D2RetinaNet):
    """Detectron2's ``RetinaNet``; ``forward_training`` in fp32 under autocast."""


class FCOS(Float32Training, D2FCOS):
    """Detectron2's ``FCOS``; ``forward_training`` in fp32 under autocast. Without it, Detectron2's
    GIoU box loss fails under fp16 / bf16 autocast (an fp32 loss written into half predictions)."""
