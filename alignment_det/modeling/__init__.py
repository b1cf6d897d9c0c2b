"""Detectron2 layer: meta-architectures and heads that call the pure tensor layer, and
``with_alwa`` to add adaptive loss weights to any detector."""
from .alwa import get_alwa, with_alwa

__all__ = ["get_alwa", "with_alwa"]
