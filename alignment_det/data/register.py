"""Idempotent dataset registration and up-front checks with errors that say what to do."""
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, register_pascal_voc

REGISTER_HINT = (
    "Register it before building the config's data loaders, e.g. "
    "alignment_det.data.register_coco_json(name, json_file, image_root) "
    "(README: 'Training on your own dataset')."
)


def _same_registration(name: str, **expected) -> bool:
    meta = MetadataCatalog.get(name)
    return all(getattr(meta, k, None) == v for k, v in expected.items())


def register_once(name: str, loader: Callable[[], List[dict]], *, files: Dict[str, str], **metadata) -> None:
    """Register ``name`` with ``loader`` and metadata ``files`` + ``metadata``; idempotent.

    ``files`` (e.g. ``json_file``, ``image_root``) identify the registration: the same name for
    the same files is a no-op, for *other* files an error (Detectron2 would silently keep the
    first registration's loader but change the metadata).
    """
    if name in DatasetCatalog.list():
        if _same_registration(name, **files):
            return
        current = {k: MetadataCatalog.get(name).get(k, None) for k in files}
        raise ValueError(f"Dataset {name!r} is already registered for other files ({current}); pick another name.")
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**files, **metadata)


def register_coco_json(name: str, json_file: str, image_root: str, metadata: Optional[dict] = None) -> None:
    """Register a COCO-json detection dataset under ``name``; calling it again is a no-op."""
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    register_once(
        name,
        lambda: load_coco_json(json_file, image_root, name),
        files=dict(json_file=json_file, image_root=image_root),
        evaluator_type="coco",
        **(metadata or {}),
    )


def register_voc(name: str, dirname: str, split: str, year: int = 2007, class_names: Optional[Sequence[str]] = None) -> None:
    """Register a Pascal VOC folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``); idempotent."""
    dirname = os.fspath(dirname)
    if name in DatasetCatalog.list():
        if _same_registration(name, dirname=dirname, split=split):
            return
        raise ValueError(f"Dataset {name!r} is already registered for another VOC folder; pick another name.")
    kwargs = {} if class_names is None else {"class_names": tuple(class_names)}
    register_pascal_voc(name, dirname, split, year, **kwargs)


def check_datasets(names: Iterable[str]) -> None:
    """Raise a clear error when a dataset is not registered or its files are missing."""
    if isinstance(names, str):
        names = [names]
    registered = DatasetCatalog.list()
    for name in names:
        if name not in registered:
            raise KeyError(f"Dataset {name!r} is not registered. {REGISTER_HINT}")
        meta = MetadataCatalog.get(name)
        if meta.get("missing_hint", None):  # a built-in set whose folder is missing (data/builtin.py)
            raise FileNotFoundError(meta.missing_hint)
        if getattr(meta, "lazy_files", False):  # written on first load (the synthetic set)
            continue
        for key in ("json_file", "odgt_file", "image_root", "dirname"):
            path = meta.get(key, None)
            if path and not os.path.exists(path):
                raise FileNotFoundError(
                    f"Dataset {name!r}: its {key} {path!r} does not exist. For Detectron2's builtin "
                    "datasets set DETECTRON2_DATASETS to the folder that holds them "
                    "(https://detectron2.readthedocs.io/tutorials/builtin_datasets.html)."
                )
