"""Datasets registered when ``alignment_det.data`` is imported.

* ``synthetic_shapes_train`` / ``synthetic_shapes_val``: coloured shapes, written on first use;
* the two small real benchmark sets (COCO json), each a ``<name>_train`` / ``<name>_test`` pair read
  from ``$ALIGNMENT_DET_<NAME>`` or, by default, ``$DETECTRON2_DATASETS/<name>`` (``./datasets/<name>``
  when that variable is unset, as for Detectron2's own datasets):

  - ``cards``: playing cards, 6 classes, about 2 boxes per image (sparse);
  - ``chess``: chess pieces, 12 classes, about 10 boxes per image (dense).

The real sets are registered even where their folder is missing, so that using one fails with an
error naming the variable to set, not with "not registered".
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .register import register_coco_json
from .synthetic import register_synthetic_datasets

__all__ = ["BENCHMARK_DATASETS", "benchmark_root", "register_all"]

# name -> what it is (for error messages)
BENCHMARK_DATASETS = {
    "cards": "playing cards, 6 classes, about 2 boxes per image",
    "chess": "chess pieces, 12 classes, about 10 boxes per image",
}


def benchmark_env_var(name: str) -> str:
    return f"ALIGNMENT_DET_{name.upper()}"


def benchmark_root(name: str) -> str:
    """The folder of benchmark set ``name``: ``$ALIGNMENT_DET_<NAME>``, else ``<name>`` under
    Detectron2's dataset root (``$DETECTRON2_DATASETS``, default ``datasets``). It holds
    ``train.json``, ``test.json``, ``train/`` and ``test/``."""
    default = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), name)
    return os.path.abspath(os.environ.get(benchmark_env_var(name), default))


def _register_missing(split_name: str, name: str, root: str) -> None:
    """A registration whose loading raises an error that says where the data is looked for."""
    if split_name in DatasetCatalog.list():
        return
    message = (
        f"Dataset {split_name!r} ({BENCHMARK_DATASETS[name]}) was looked for in {root}, which does not exist. "
        f"Set {benchmark_env_var(name)} to the folder that holds its train.json, test.json, train/ and test/, "
        f"or put that folder at $DETECTRON2_DATASETS/{name}."
    )

    def missing():
        raise FileNotFoundError(message)

    DatasetCatalog.register(split_name, missing)
    MetadataCatalog.get(split_name).set(missing_hint=message)


def register_all() -> None:
    register_synthetic_datasets()
    for name in BENCHMARK_DATASETS:
        root = benchmark_root(name)
        for split in ("train", "test"):
            if os.path.isdir(root):
                register_coco_json(f"{name}_{split}", os.path.join(root, f"{split}.json"), os.path.join(root, split))
            else:
                _register_missing(f"{name}_{split}", name, root)
