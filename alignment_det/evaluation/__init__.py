"""Evaluation beyond COCO AP: score-vs-localisation alignment.

``alignment_metrics`` is numpy/scipy only and imports without torch or Detectron2;
:class:`AlignmentEvaluator` (a Detectron2 ``DatasetEvaluator``) and the NMS recorder are imported
on first use, so that ``import alignment_det.evaluation.alignment_metrics`` works where Detectron2
is absent.
"""
import importlib

__all__ = ["AlignmentEvaluator", "NMSRecorder"]

_LAZY = {
    "AlignmentEvaluator": ".alignment_evaluator",
    "NMSRecorder": ".nms_recorder",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
