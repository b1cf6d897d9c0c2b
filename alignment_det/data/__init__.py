"""Dataset registration (idempotent), checks (registration, files, malformed boxes), and the
built-in synthetic dataset.

Importing this package registers ``synthetic_shapes_train`` / ``synthetic_shapes_val``
and the real benchmark sets ``cards_{train,test}`` and ``chess_{train,test}`` (``data/builtin.py``).
"""
from .box_report import MalformedBoxesError, find_malformed_boxes
from .build import DatasetDicts, get_dataset_dicts
from .crowdhuman import crowdhuman_dataset_dicts, load_crowdhuman_odgt, register_crowdhuman
from .register import check_datasets, register_coco_json, register_voc, run_registration_files
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_coco, make_synthetic_voc, register_synthetic_datasets
from .builtin import register_all

register_all()

__all__ = [
    "DatasetDicts",
    "MalformedBoxesError",
    "SYNTHETIC_CLASSES",
    "check_datasets",
    "crowdhuman_dataset_dicts",
    "find_malformed_boxes",
    "load_crowdhuman_odgt",
    "register_crowdhuman",
    "get_dataset_dicts",
    "make_synthetic_coco",
    "make_synthetic_voc",
    "register_all",
    "register_coco_json",
    "register_synthetic_datasets",
    "register_voc",
    "run_registration_files",
]
