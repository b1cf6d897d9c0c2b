"""TIDE error breakdown (Bolya et al., ECCV 2020) through ``hotcoco``, an optional dependency.

``hotcoco`` (Rust, numpy >= 1.22 only, actively released) computes TIDE's six error types and the
AP each one costs; ``tidecv``, the authors' package, is unmaintained since 2021 and needs pandas,
seaborn, opencv and segmentation polygons on every box. Install with the ``analysis`` extra.
Records are those of :mod:`alignment_det.evaluation.alignment_metrics` (boxes XYXY).
"""
from typing import Dict, Mapping, Sequence

import numpy as np

from alignment_det.utils.optional import import_optional

__all__ = ["TIDE_ERRORS", "tide_errors", "require_hotcoco"]

#: hotcoco's names of TIDE's error types; the values returned are AP points (0-100) each one costs.
TIDE_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FP", "FN")


def require_hotcoco():
    """Import hotcoco, or fail with the ``pip install`` of the ``analysis`` extra."""
    return import_optional("hotcoco", extra="analysis", purpose="TIDE error analysis")


def _xywh(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def tide_errors(images: Sequence[Mapping], *, pos_thr: float = 0.5, bg_thr: float = 0.1) -> Dict[str, float]:
    """TIDE's dAP (AP points, 0-100) per error type at IoU ``pos_thr``, over ``images``.

    Returns ``{"dAP_cls", "dAP_loc", "dAP_both", "dAP_dupe", "dAP_bkg", "dAP_miss", "dAP_fp", "dAP_fn",
    "ap50"}``; NaN everywhere when there is no detection (TIDE is undefined then).
    """
    hotcoco = require_hotcoco()
    nan = {f"dAP_{k.lower()}": float("nan") for k in TIDE_ERRORS}
    nan["ap50"] = float("nan")
    classes = set()
    gt_images, annotations, detections = [], [], []
    # hotcoco takes integer image ids only; a dataset's own may be strings (VOC: the file stem,
    # "cat_01"). Number the records' ids 1, 2, ... in order of appearance, keeping them distinct.
    hotcoco_ids: Dict[object, int] = {}
    for idx, rec in enumerate(images):
        key = rec.get("image_id", ("record", idx))
        if key in hotcoco_ids:
            image_id = hotcoco_ids[key]
        else:
            image_id = hotcoco_ids[key] = len(hotcoco_ids) + 1
            gt_images.append({"id": image_id, "height": int(rec.get("height", 0)), "width": int(rec.get("width", 0))})
        gt_classes = np.asarray(rec.get("gt_classes", []), dtype=np.int64).reshape(-1)
        crowd = np.asarray(rec.get("gt_crowd", np.zeros(len(gt_classes), bool)), dtype=bool).reshape(-1)
        for box, c, cr in zip(_xywh(rec.get("gt_boxes", np.zeros((0, 4)))), gt_classes, crowd):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": int(cr)})
            classes.add(int(c))
        det_classes = np.asarray(rec.get("det_classes", []), dtype=np.int64).reshape(-1)
        for box, s, c in zip(_xywh(rec.get("det_boxes", np.zeros((0, 4)))), np.asarray(rec.get("det_scores", [])), det_classes):
            detections.append({"image_id": image_id, "category_id": int(c) + 1, "bbox": box.tolist(), "score": float(s)})
            classes.add(int(c))
    if not detections or not annotations:
        return nan
    # COCO category ids start at 1; the records' classes are contiguous from 0.
    gt = hotcoco.COCO({"images": gt_images, "annotations": annotations,
                       "categories": [{"id": c + 1, "name": str(c)} for c in sorted(classes)]})
    ev = hotcoco.COCOeval(gt, gt.load_res(detections), "bbox")
    ev.evaluate()
    res = ev.tide_errors(pos_thr=pos_thr, bg_thr=bg_thr)
    out = {f"dAP_{k.lower()}": 100.0 * float(res["delta_ap"].get(k, float("nan"))) for k in TIDE_ERRORS}
    out["ap50"] = 100.0 * float(res["ap_base"])
    return out
