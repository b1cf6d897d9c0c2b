"""CrowdHuman (``.odgt``) registration for Detectron2, as used by DATE's CrowdHuman setting.

An ``.odgt`` file has one JSON record per line::

    {"ID": "273271,c9db000d5146c15", "gtboxes": [
        {"tag": "person", "fbox": [x, y, w, h], "vbox": [...], "hbox": [...],
         "extra": {"box_id": 0, "occ": 0, "ignore": 0}, ...}, ...]}

Images are ``<image_root>/<ID>.jpg``. The loader keeps the full-body box ``fbox`` (the box DATE and
the CrowdHuman detection benchmark use) as class ``person`` (0); boxes with ``extra.ignore == 1`` or
tag ``mask`` (crowds, reflections) become ``iscrowd=1``, which Detectron2's ``DatasetMapper`` drops
from training and COCO evaluation treats as ignore regions. ``fbox`` may extend past the image; the
mapper clips it. Image sizes come from the record's ``height`` / ``width`` when present, else from the
image header (PIL reads only the header).
"""
import json
import os
from typing import Dict, List, Optional

from detectron2.structures import BoxMode
from PIL import Image

from .build import get_dataset_dicts
from .register import register_once

__all__ = ["CROWDHUMAN_CLASSES", "crowdhuman_dataset_dicts", "crowdhuman_root", "load_crowdhuman_odgt", "register_crowdhuman"]

CROWDHUMAN_CLASSES = ("person",)


def _image_size(path: str) -> Optional[tuple]:
    try:
        with Image.open(path) as im:
            w, h = im.size
        return h, w
    except (FileNotFoundError, OSError):
        return None


def load_crowdhuman_odgt(odgt_file: str, image_root: str, *, image_ext: str = ".jpg") -> List[Dict]:
    """Detectron2 dataset dicts from a CrowdHuman ``.odgt`` file (see the module docstring).

    Raises:
        FileNotFoundError: when ``odgt_file`` is missing.
        ValueError: for a malformed line (with its line number).
    """
    if not os.path.isfile(odgt_file):
        raise FileNotFoundError(
            f"CrowdHuman annotation file {odgt_file!r} does not exist (expected e.g. "
            "annotation_train.odgt from https://www.crowdhuman.org)"
        )
    dicts = []
    with open(odgt_file) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                image_id = rec["ID"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{odgt_file}:{line_no}: not a CrowdHuman record ({e})") from None
            file_name = os.path.join(image_root, image_id + image_ext)
            if "height" in rec and "width" in rec:
                h, w = int(rec["height"]), int(rec["width"])
            else:
                size = _image_size(file_name)
                if size is None:
                    raise FileNotFoundError(f"{odgt_file}:{line_no}: image {file_name!r} not found")
                h, w = size
            annos = []
            for box in rec.get("gtboxes", []):
                if "fbox" not in box:
                    continue
                x, y, bw, bh = (float(v) for v in box["fbox"])
                ignore = int(box.get("extra", {}).get("ignore", 0)) == 1 or box.get("tag") != "person"
                annos.append(
                    {
                        "bbox": [x, y, bw, bh],
                        "bbox_mode": BoxMode.XYWH_ABS,
                        "category_id": 0,
                        "iscrowd": int(ignore),
                    }
                )
            dicts.append({"file_name": file_name, "image_id": image_id, "height": h, "width": w, "annotations": annos})
    return dicts


def register_crowdhuman(name: str, odgt_file: str, image_root: str) -> None:
    """Register a CrowdHuman split under ``name`` (idempotent for the same files).

    Evaluate with Detectron2's ``COCOEvaluator(dataset_name=name, max_dets_per_image=500)``: it
    converts the dicts to COCO json (AP / AP50 / AR); CrowdHuman's mMR is not implemented here.
    """
    odgt_file, image_root = os.fspath(odgt_file), os.fspath(image_root)
    register_once(
        name,
        lambda: load_crowdhuman_odgt(odgt_file, image_root),
        files=dict(odgt_file=odgt_file, image_root=image_root),
        thing_classes=list(CROWDHUMAN_CLASSES),
        evaluator_type="coco",
    )


def crowdhuman_root() -> str:
    """``$DETECTRON2_DATASETS/CrowdHuman`` (default ``datasets/CrowdHuman``), holding
    ``annotation_{train,val}.odgt`` and ``Images/``."""
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "CrowdHuman")


def crowdhuman_dataset_dicts(
    split: str = "train", root: Optional[str] = None, *, strict_boxes: bool = False, **kwargs
) -> List[Dict]:
    """Register ``crowdhuman_<split>`` (``<root>/annotation_<split>.odgt``, ``<root>/Images``) and
    return its dicts through :func:`alignment_det.data.get_dataset_dicts` (``strict_boxes`` and
    ``kwargs``, e.g. ``filter_empty=False``, as there). Lets a LazyConfig use CrowdHuman without a
    separate registration step."""
    root = root or crowdhuman_root()
    name = f"crowdhuman_{split}"
    register_crowdhuman(name, os.path.join(root, f"annotation_{split}.odgt"), os.path.join(root, "Images"))
    return get_dataset_dicts(name, strict_boxes=strict_boxes, **kwargs)
