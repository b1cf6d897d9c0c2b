"""The malformed-box report run on every dataset that ``get_dataset_dicts`` loads.

Detectron2 passes annotation boxes through unchecked: its mapper converts XYWH to XYXY and
``apply_box`` then takes the min/max of the corners, so a box with a *negative* width becomes
another, valid box; NaN, zero-area and fully-outside boxes are dropped by
``filter_empty_instances`` without a word. Here every box is classified once, in this order:

* ``nan``: a coordinate is NaN or infinite;
* ``negative_size``: width or height < 0 (never reinterpreted as another box);
* ``zero_size``: width or height == 0;
* ``outside_image``: no overlap with the image (needs the record's ``height``/``width``).

Boxes that only extend past the border are fine (the mapper clips them). Malformed boxes are
left out of the returned dicts and reported in one warning, counted per kind with the first
image ids of each; with ``strict=True`` they are an error instead.
"""
import logging
from typing import Dict, List, Sequence

import numpy as np
from detectron2.structures import BoxMode

logger = logging.getLogger("alignment_det")

__all__ = ["BOX_PROBLEMS", "MalformedBoxesError", "find_malformed_boxes", "report_malformed_boxes"]

#: kind -> what the report says about it, in the order boxes are classified.
BOX_PROBLEMS = {
    "nan": "NaN or infinite coordinates",
    "negative_size": "negative width or height",
    "zero_size": "zero width or height",
    "outside_image": "entirely outside the image",
}
_CHECKED_MODES = (int(BoxMode.XYWH_ABS), int(BoxMode.XYXY_ABS))
_FIRST_IDS = 5


class MalformedBoxesError(ValueError):
    pass


def find_malformed_boxes(dataset_dicts: Sequence[dict]) -> Dict[str, List[tuple]]:
    """{kind: [(record index, annotation index), ...]} for every malformed box.

    Boxes in a mode other than XYWH_ABS / XYXY_ABS (relative or rotated) are not checked.
    """
    where, boxes, modes, sizes = [], [], [], []
    for i, record in enumerate(dataset_dicts):
        size = (float(record.get("width", np.nan)), float(record.get("height", np.nan)))
        for j, ann in enumerate(record.get("annotations", ())):
            mode = int(ann.get("bbox_mode", BoxMode.XYXY_ABS))
            if mode not in _CHECKED_MODES or len(ann.get("bbox", ())) != 4:
                continue
            where.append((i, j))
            boxes.append(ann["bbox"])
            modes.append(mode)
            sizes.append(size)
    out = {kind: [] for kind in BOX_PROBLEMS}
    if not boxes:
        return out
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.asarray(modes) == int(BoxMode.XYWH_ABS)
    w = np.where(xywh, b[:, 2], b[:, 2] - b[:, 0])
    h = np.where(xywh, b[:, 3], b[:, 3] - b[:, 1])
    img_w, img_h = np.asarray(sizes).T
    with np.errstate(invalid="ignore"):
        nan = ~np.isfinite(b).all(axis=1)
        negative = ~nan & ((w < 0) | (h < 0))
        zero = ~nan & ~negative & ((w == 0) | (h == 0))
        # Comparisons with an unknown (NaN) image size are False: such boxes are not flagged.
        outside = ~nan & ~negative & ~zero & (
            (b[:, 0] >= img_w) | (b[:, 1] >= img_h) | (b[:, 0] + w <= 0) | (b[:, 1] + h <= 0)
        )
    for kind, mask in zip(BOX_PROBLEMS, (nan, negative, zero, outside)):
        out[kind] = [where[k] for k in np.flatnonzero(mask)]
    return out


def report_malformed_boxes(dataset_dicts: List[dict], *, dataset: str, strict: bool) -> List[dict]:
    """Warn about (or, ``strict``, raise on) malformed boxes; return the dicts without them.

    Records that lose boxes are shallow copies, so a registered loader's own list is untouched.
    """
    found = find_malformed_boxes(dataset_dicts)
    num_bad = sum(len(v) for v in found.values())
    if not num_bad:
        return dataset_dicts
    total = sum(len(r.get("annotations", ())) for r in dataset_dicts)
    parts = []
    for kind, hits in found.items():
        if hits:
            ids = list(dict.fromkeys(dataset_dicts[i].get("image_id", i) for i, _ in hits))
            more = ", ..." if len(ids) > _FIRST_IDS else ""
            parts.append(f"{len(hits)} {BOX_PROBLEMS[kind]} (image ids {', '.join(map(str, ids[:_FIRST_IDS]))}{more})")
    summary = f"Dataset {dataset!r}: {num_bad} of {total} boxes are malformed: {'; '.join(parts)}."
    if strict:
        raise MalformedBoxesError(
            f"{summary} strict_boxes=True makes this an error: fix the annotations, or set strict_boxes=False "
            "on the dataset (e.g. dataloader.train.dataset.strict_boxes=False) to leave them out with a warning."
        )
    logger.warning(
        f"{summary} They are left out (never reinterpreted as other boxes). Fix the annotations, or set "
        "strict_boxes=True on the dataset (e.g. dataloader.train.dataset.strict_boxes=True) to make this an error."
    )
    bad = {}
    for hits in found.values():
        for i, j in hits:
            bad.setdefault(i, set()).add(j)
    out = list(dataset_dicts)
    for i, js in bad.items():
        record = out[i]
        out[i] = dict(record, annotations=[a for j, a in enumerate(record["annotations"]) if j not in js])
    return out
