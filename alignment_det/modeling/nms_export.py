"""Export a Detectron2 detector whose inference ends in NMS with DATE's export interface.

:class:`NMSDetectorExport` wraps RetinaNet, FCOS, ATSS, MAL, RetinaNet-Conf, HCRAL, ALWA-wrapped and
Faster R-CNN models so that the traced graph has the inputs and outputs of
:class:`alignment_det.modeling.meta_arch.date_export.DATEExport`:

    images (N, 3, H, W) raw pixels  ->  boxes (N, D, 4) XYXY, scores (N, D), classes (N, D) int64

with D the model's detections-per-image limit and rows past an image's detections padding (box 0,
score 0, class -1), so ``classes >= 0`` selects the detections of either export. The score
threshold, per-level top-k and NMS run inside the graph, with the number of candidates traced
(Detectron2's clamp of the candidate count), so the exported file returns only padding on an image
without candidates. N, H and W are fixed by the example the graph is traced on.
"""
from typing import List, Tuple

import torch
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Instances
from torch import Tensor, nn

__all__ = ["NMSDetectorExport", "max_detections_per_image", "pad_detections"]


def max_detections_per_image(model: nn.Module) -> int:
    """The most detections ``model``'s inference returns for one image (the padded length D)."""
    if isinstance(model, GeneralizedRCNN):
        predictor = model.roi_heads.box_predictor
        if isinstance(predictor, nn.ModuleList):  # cascade: the last stage's predictor decides
            predictor = predictor[-1]
        limit, where = getattr(predictor, "test_topk_per_image", None), "model.roi_heads.box_predictor.test_topk_per_image"
    else:
        limit, where = getattr(model, "max_detections_per_image", None), "model.max_detections_per_image"
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"{type(model).__name__}: exporting needs a fixed number of detections per image to pad to, "
            f"got {where} = {limit!r}; set it to a positive integer (e.g. 100)"
        )
    return limit


def pad_detections(instances: Instances, num_rows: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(boxes (D, 4), scores (D,), classes (D,)) of ``instances``' first ``num_rows`` detections,
    padded to D = ``num_rows`` rows with box 0, score 0, class -1.

    Concatenating a full block of padding and slicing keeps every shape static when traced, whatever
    the number of detections of the image.
    """
    boxes, scores, classes = instances.pred_boxes.tensor, instances.scores, instances.pred_classes
    boxes = torch.cat([boxes, boxes.new_zeros(num_rows, 4)])[:num_rows]
    scores = torch.cat([scores, scores.new_zeros(num_rows)])[:num_rows]
    classes = torch.cat([classes, classes.new_full((num_rows,), -1)])[:num_rows]
    return boxes, scores, classes


class NMSDetectorExport(nn.Module):
    """(N, 3, H, W) raw pixels in the model's ``input_format`` -> boxes (N, D, 4), scores (N, D),
    classes (N, D), padding rows class -1 (D = :func:`max_detections_per_image`).

    Dense detectors run their full inference (``model([{"image": x}, ...])``: normalise, pad to the
    size divisibility, head, threshold, top-k, NMS, boxes clipped to H x W); ``GeneralizedRCNN`` its
    ``inference(..., do_postprocess=False)``, as Detectron2's ``tools/deploy/export_model.py``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_rows = max_detections_per_image(model)

    def instances(self, images: Tensor) -> List[Instances]:
        inputs = [{"image": image} for image in images.unbind(0)]  # N fixed at tracing, as H and W
        if isinstance(self.model, GeneralizedRCNN):
            return self.model.inference(inputs, do_postprocess=False)
        return [out["instances"] for out in self.model(inputs)]

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        rows = [pad_detections(inst, self.num_rows) for inst in self.instances(images)]
        boxes, scores, classes = (torch.stack(x) for x in zip(*rows))
        return boxes, scores, classes
