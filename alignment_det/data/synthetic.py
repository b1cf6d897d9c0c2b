"""A small deterministic detection dataset: coloured shapes on textured backgrounds.

Used by the instant-test configs and the end-to-end tests, so that training and COCO
evaluation run end to end with no download. The images and a COCO json are written
once to a cache folder (``$ALIGNMENT_DET_CACHE``, default ``~/.cache/alignment_det``)
the first time the dataset is loaded; the same seed always gives the same bytes.
"""
import json
import os
import shutil
import tempfile
from typing import Dict, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from alignment_det.utils.optional import import_optional

SYNTHETIC_CLASSES = ("rectangle", "ellipse", "triangle")
# (images, seed). ``mini``: for smoke runs where evaluation only has to run, not to mean much.
SYNTHETIC_SPLITS = {"synthetic_shapes_train": (64, 0), "synthetic_shapes_val": (16, 1), "synthetic_shapes_mini": (4, 2)}
_VERSION = "v1"


def cache_root() -> str:
    return os.environ.get("ALIGNMENT_DET_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "alignment_det"))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency colour gradient + stripes + noise, so shapes are not trivially separable."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-0.4, 0.4, size=(2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    period, angle = rng.uniform(6, 20), rng.uniform(0, np.pi)
    img += 20 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _cv2():
    return import_optional("cv2", extra="d2", package="opencv-python-headless", purpose="the synthetic dataset")


def _draw(rng: np.random.Generator, img: np.ndarray, cls: int, box) -> None:
    cv2 = _cv2()

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    if cls == 0:
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, thickness=-1)
    elif cls == 1:
        cv2.ellipse(img, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, colour, -1)
    else:
        pts = np.array([[(x0 + x1) // 2, y0], [x0, y1 - 1], [x1 - 1, y1 - 1]], dtype=np.int32)
        cv2.fillPoly(img, [pts], colour)


def synthetic_images(num_images: int, seed: int):
    """Yield ``(image_id, BGR image (H, W, 3) uint8, boxes [(x0, y0, x1, y1)], classes [int])``
    for images 1..``num_images``: 96-160 x 128-192 px with 1-4 non-overlapping shapes of 16-64 px
    (classes index :data:`SYNTHETIC_CLASSES`)."""
    rng = np.random.default_rng(seed)
    for image_id in range(1, num_images + 1):
        h, w = int(rng.integers(96, 161)), int(rng.integers(128, 193))
        img = _background(rng, h, w)
        boxes, classes = [], []
        for _ in range(int(rng.integers(1, 5))):
            for _attempt in range(20):
                bw, bh = rng.uniform(16, 64, size=2)
                x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                box = (x0, y0, x0 + bw, y0 + bh)
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                    break
            else:
                continue
            box = tuple(float(round(v)) for v in box)
            cls = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
            _draw(rng, img, cls, box)
            boxes.append(box)
            classes.append(cls)
        yield image_id, img, boxes, classes


def _write_into_place(out_dir: str, write) -> None:
    """``write(folder)`` into a temporary folder renamed to ``out_dir``, so that processes that
    generate the same split at once (``--num-gpus 2``) never see half a dataset."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp_")
    write(tmp)
    try:
        os.rename(tmp, out_dir)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def make_synthetic_coco(out_dir: str, num_images: int, seed: int) -> str:
    """Write ``num_images`` images (:func:`synthetic_images`) and ``annotations.json`` to
    ``out_dir``; return the json path. Nothing is written when the json exists."""
    json_path = os.path.join(out_dir, "annotations.json")
    if os.path.isfile(json_path):
        return json_path

    def write(folder):
        images, annotations = [], []
        for image_id, img, boxes, classes in synthetic_images(num_images, seed):
            for box, cls in zip(boxes, classes):
                annotations.append(
                    dict(
                        id=len(annotations) + 1, image_id=image_id, category_id=cls + 1, iscrowd=0,
                        bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                        area=(box[2] - box[0]) * (box[3] - box[1]),
                    )
                )
            file_name = f"{image_id:05d}.png"
            _cv2().imwrite(os.path.join(folder, file_name), img)
            images.append(dict(id=image_id, file_name=file_name, height=img.shape[0], width=img.shape[1]))
        categories = [dict(id=i + 1, name=n) for i, n in enumerate(SYNTHETIC_CLASSES)]
        with open(os.path.join(folder, "annotations.json"), "w") as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)

    _write_into_place(out_dir, write)
    return json_path


def make_synthetic_voc(
    out_dir: str, splits: Dict[str, int], seed: int = 0, class_names: Sequence[str] = SYNTHETIC_CLASSES
) -> str:
    """Write a Pascal VOC folder of synthetic shapes to ``out_dir`` (``JPEGImages/*.jpg``,
    ``Annotations/*.xml`` with 1-based pixel boxes, ``ImageSets/Main/<split>.txt``), ``splits``
    giving each split's number of images (file stems ``<split>_<n>``); returns ``out_dir``.
    The objects are named ``class_names`` (one name per shape of :data:`SYNTHETIC_CLASSES`);
    register it with ``register_voc(name, out_dir, split, class_names=class_names)``."""
    if len(class_names) != len(SYNTHETIC_CLASSES):
        raise ValueError(f"class_names needs {len(SYNTHETIC_CLASSES)} names (one per shape), got {list(class_names)}")

    def write(folder):
        for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(folder, sub))
        for k, (split, num_images) in enumerate(splits.items()):
            stems = []
            for image_id, img, boxes, classes in synthetic_images(num_images, seed + k):
                stem = f"{split}_{image_id:04d}"
                _cv2().imwrite(os.path.join(folder, "JPEGImages", stem + ".jpg"), img)
                objects = "".join(
                    f"<object><name>{class_names[c]}</name><difficult>0</difficult><bndbox>"
                    f"<xmin>{int(b[0]) + 1}</xmin><ymin>{int(b[1]) + 1}</ymin><xmax>{int(b[2])}</xmax><ymax>{int(b[3])}</ymax>"
                    "</bndbox></object>"
                    for b, c in zip(boxes, classes)
                )
                with open(os.path.join(folder, "Annotations", stem + ".xml"), "w") as f:
                    f.write(f"<annotation><filename>{stem}.jpg</filename><size><width>{img.shape[1]}</width>"
                            f"<height>{img.shape[0]}</height><depth>3</depth></size>{objects}</annotation>")
                stems.append(stem)
            with open(os.path.join(folder, "ImageSets", "Main", split + ".txt"), "w") as f:
                f.write("\n".join(stems) + "\n")

    _write_into_place(out_dir, write)
    return out_dir


def register_synthetic_datasets() -> None:
    """Register ``synthetic_shapes_train`` / ``_val`` / ``_mini`` (idempotent, lazy)."""
    for name, (num_images, seed) in SYNTHETIC_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        out_dir = os.path.join(cache_root(), f"synthetic_shapes_{_VERSION}", name)

        def load(name=name, out_dir=out_dir, num_images=num_images, seed=seed):
            return load_coco_json(make_synthetic_coco(out_dir, num_images, seed), out_dir, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=os.path.join(out_dir, "annotations.json"),
            image_root=out_dir,
            evaluator_type="coco",
            thing_classes=list(SYNTHETIC_CLASSES),
            lazy_files=True,  # written on first load; check_datasets must not demand them
        )
