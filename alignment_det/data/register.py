"""Idempotent dataset registration and up-front checks with errors that say what to do."""
import os
import runpy
import xml.etree.ElementTree as ET
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from detectron2.data.datasets.pascal_voc import load_voc_instances

REGISTER_HINT = (
    "Register it before building the config's data loaders, e.g. with "
    "alignment_det.data.register_coco_json(name, json_file, image_root) or register_voc(...) in a file "
    "passed as train_net.py --register FILE.py (README: 'Training on your own dataset')."
)


def _same_path(a, b) -> bool:
    # "./x", "x/", a relative path and a symlink to the same folder are one registration.
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def _conflicts(name: str, *, files: Dict[str, str], **settings) -> List[str]:
    """What differs between the registration of ``name`` and ``files`` + ``settings``, one
    ``key: registered -> asked`` line each (empty when they are the same)."""
    meta = MetadataCatalog.get(name)
    out = [f"{k}: {meta.get(k, None)!r} -> {v!r}" for k, v in files.items() if not _same_path(meta.get(k, None), v)]
    out += [f"{k}: {meta.get(k, None)!r} -> {v!r}" for k, v in settings.items() if meta.get(k, None) != v]
    return out


def _register_or_check(name: str, *, files: Dict[str, str], settings: Dict[str, object]) -> bool:
    """True when ``name`` is still to be registered; False when it already is, with the same
    files (compared as resolved real paths) and ``settings``; else an error naming what differs
    (Detectron2 would keep the first registration's loader but change the metadata)."""
    if name not in DatasetCatalog.list():
        return True
    conflicts = _conflicts(name, files=files, **settings)
    if conflicts:
        raise ValueError(
            f"Dataset {name!r} is already registered with other settings ({'; '.join(conflicts)}). "
            "Pick another name, or register it once with the settings you want."
        )
    return False


def _absolute(files: Dict[str, str]) -> Dict[str, str]:
    # Absolute, so that the registration means the same files after a change of directory.
    return {k: os.path.abspath(os.fspath(v)) for k, v in files.items()}


def register_once(name: str, loader: Callable[[], List[dict]], *, files: Dict[str, str], **metadata) -> None:
    """Register ``name`` with ``loader`` and metadata ``files`` + ``metadata``; idempotent.

    ``files`` (e.g. ``json_file``, ``image_root``) identify the registration: the same name for
    the same files (compared as resolved real paths) is a no-op, for *other* files an error.
    """
    if _register_or_check(name, files=files, settings={}):
        DatasetCatalog.register(name, loader)
        MetadataCatalog.get(name).set(**_absolute(files), **metadata)


def register_coco_json(name: str, json_file: str, image_root: str, metadata: Optional[dict] = None) -> None:
    """Register a COCO-json detection dataset under ``name``; calling it again is a no-op."""
    files = _absolute(dict(json_file=json_file, image_root=image_root))
    register_once(
        name,
        lambda: load_coco_json(files["json_file"], files["image_root"], name),
        files=files,
        evaluator_type="coco",
        **(metadata or {}),
    )


def register_voc(name: str, dirname: str, split: str, year: int = 2007, class_names: Optional[Sequence[str]] = None) -> None:
    """Register a Pascal VOC folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``).

    ``class_names``: the object names of the annotations, in the order of the model's classes
    (default: the 20 Pascal VOC classes). Calling it again with the same folder (as a real path),
    split, year and class names is a no-op; with another one an error. ``year`` selects the VOC
    metric of ``PascalVOCDetectionEvaluator`` (2007: 11-point AP).
    """
    files = _absolute(dict(dirname=dirname))
    thing_classes = list(VOC_CLASS_NAMES if class_names is None else class_names)
    if _register_or_check(name, files=files, settings=dict(split=split, year=year, thing_classes=thing_classes)):
        DatasetCatalog.register(name, lambda: load_voc_dicts(name, files["dirname"], split, thing_classes))
        MetadataCatalog.get(name).set(thing_classes=thing_classes, dirname=files["dirname"], year=year, split=split)


def load_voc_dicts(name: str, dirname: str, split: str, class_names: Sequence[str]) -> List[dict]:
    """Detectron2's ``load_voc_instances``, with an error that names an object outside ``class_names``
    (Detectron2's is ``tuple.index(x): x not in tuple``)."""
    try:
        return load_voc_instances(dirname, split, tuple(class_names))
    except ValueError as e:
        if "not in tuple" not in str(e):
            raise
        found = sorted(_voc_object_names(dirname, split) - set(class_names))
        raise ValueError(
            f"VOC dataset {name!r} ({dirname}, split {split!r}): its annotations name objects "
            f"{found} that are not in class_names {list(class_names)}. Pass class_names=[...] with every "
            "object name to register_voc (the 20 Pascal VOC classes are the default)."
        ) from None


def _voc_object_names(dirname: str, split: str) -> set:
    with open(os.path.join(dirname, "ImageSets", "Main", split + ".txt")) as f:
        ids = f.read().split()
    names = set()
    for fileid in ids:
        tree = ET.parse(os.path.join(dirname, "Annotations", fileid + ".xml"))
        names.update(obj.find("name").text for obj in tree.findall("object"))
    return names


def checked_registration_files(paths: Sequence[str]) -> List[str]:
    """Absolute paths of ``paths``, the user's files that register datasets; an error for one
    that does not exist."""
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--register {path}: no such file (a Python file that registers your datasets)")
    return [os.path.abspath(p) for p in paths]


def run_registration_files(paths: Sequence[str]) -> None:
    """Run the user's Python files that register datasets (``train_net.py --register``), in this
    process; each training process must run them (Detectron2's ``launch`` spawns fresh ones)."""
    for path in checked_registration_files(paths):
        runpy.run_path(path, run_name="__register__")


def dataset_thing_classes(name: str) -> Optional[List[str]]:
    """``thing_classes`` of a registered dataset, loading it once when its metadata has none yet
    (a COCO json sets them when it is loaded); None when it has none or is not registered."""
    classes = MetadataCatalog.get(name).get("thing_classes", None)
    if classes is None and name in DatasetCatalog.list():
        DatasetCatalog.get(name)
        classes = MetadataCatalog.get(name).get("thing_classes", None)
    return None if classes is None else list(classes)


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
