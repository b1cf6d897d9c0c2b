"""Datasets registered when ``alignment_det.data`` is imported."""
import os

from .register import register_coco_json
from .synthetic import register_synthetic_datasets


def cards_root() -> str:
    """The cards dataset: ``$ALIGNMENT_DET_CARDS`` or ``../shared/data/cards`` beside a checkout."""
    default = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "cards")
    return os.path.abspath(os.environ.get("ALIGNMENT_DET_CARDS", default))


def register_all() -> None:
    register_synthetic_datasets()
    root = cards_root()
    if os.path.isdir(root):
        for split in ("train", "test"):
            register_coco_json(f"cards_{split}", os.path.join(root, f"{split}.json"), os.path.join(root, split))
