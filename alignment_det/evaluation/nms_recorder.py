"""Record the candidates a detector hands to its final NMS, without touching its inference code.

Detectron2's ``RetinaNet`` / ``FCOS`` meta-architectures, ``FastRCNNOutputLayers`` (Faster R-CNN's
second stage) and ``RetinaNetConf`` call ``batched_nms`` through the name their module imported
(``from detectron2.layers import batched_nms``), and so does DATE when it is evaluated with NMS.
:class:`NMSRecorder` rebinds that name in those modules only, for as long as it records, to a
wrapper that calls the original and keeps a CPU copy of its inputs and of the kept indices. The
RPN's proposal NMS (``proposal_utils``) is deliberately not a call site: its boxes are proposals,
not detections.

Every recorded call is one image's final NMS, in the order the model processes the batch, so a
batch of N images yields N calls. A model that runs no NMS (DATE as published) yields none, and its
detections are their own candidates.
"""
import importlib
import logging
from typing import Dict, Iterable, List, NamedTuple, Optional

import torch

__all__ = ["DEFAULT_NMS_CALL_SITES", "NMSCall", "NMSRecorder"]

logger = logging.getLogger(__name__)

#: Modules whose ``batched_nms`` is the final, per-image detection NMS.
DEFAULT_NMS_CALL_SITES = (
    "detectron2.modeling.meta_arch.retinanet",
    "detectron2.modeling.meta_arch.fcos",
    "detectron2.modeling.roi_heads.fast_rcnn",
    "alignment_det.modeling.meta_arch.retinanet_conf",
    # DATE calls it only when evaluated with ``test_nms_thresh`` set (a check of the method)
    "alignment_det.modeling.meta_arch.date",
)


class NMSCall(NamedTuple):
    """One recorded ``batched_nms(boxes, scores, idxs, iou_threshold) -> keep`` call (CPU tensors)."""

    boxes: torch.Tensor  # (C, 4) XYXY candidates, in the model's input resolution
    scores: torch.Tensor  # (C,)
    classes: torch.Tensor  # (C,) int64, the ``idxs`` NMS groups by (class ids)
    kept: torch.Tensor  # (K,) int64 indices of the kept candidates, in decreasing score
    iou_threshold: float


class NMSRecorder:
    """Records every final-NMS call of a model while active (``start``/``stop`` or a ``with`` block).

    Args:
        call_sites: module names whose ``batched_nms`` to record; default
            :data:`DEFAULT_NMS_CALL_SITES`. Add the module of a new meta-architecture that calls
            ``batched_nms`` itself.
    """

    def __init__(self, call_sites: Optional[Iterable[str]] = None):
        self.call_sites = tuple(DEFAULT_NMS_CALL_SITES if call_sites is None else call_sites)
        self._calls: List[NMSCall] = []
        self._originals: Dict[str, object] = {}

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def _wrap(self, original):
        def batched_nms(boxes, scores, idxs, iou_threshold):
            keep = original(boxes, scores, idxs, iou_threshold)
            self._calls.append(
                NMSCall(
                    boxes.detach().float().cpu(),
                    scores.detach().float().cpu(),
                    idxs.detach().long().cpu(),
                    keep.detach().long().cpu(),
                    float(iou_threshold),
                )
            )
            return keep

        batched_nms.__wrapped__ = original
        return batched_nms

    def start(self) -> "NMSRecorder":
        """Rebind ``batched_nms`` in every call site (idempotent) and clear the recorded calls."""
        self._calls = []
        if self.active:
            return self
        for name in self.call_sites:
            module = importlib.import_module(name)
            if not hasattr(module, "batched_nms"):
                raise AttributeError(
                    f"NMSRecorder: module {name} has no 'batched_nms' to record; list only modules that "
                    "import it by that name as call sites"
                )
            self._originals[name] = module.batched_nms
            module.batched_nms = self._wrap(module.batched_nms)
        return self

    def stop(self) -> None:
        """Restore the original functions (recorded calls stay available to :meth:`pop`)."""
        for name, original in self._originals.items():
            importlib.import_module(name).batched_nms = original
        self._originals = {}

    def pop(self) -> List[NMSCall]:
        """The calls recorded since the last ``pop`` (or ``start``), oldest first."""
        calls, self._calls = self._calls, []
        return calls

    def __enter__(self) -> "NMSRecorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
