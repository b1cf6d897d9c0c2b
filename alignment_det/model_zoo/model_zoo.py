"""``get`` / ``get_config`` / ``get_config_file`` / ``get_checkpoint_url``, as in
``detectron2.model_zoo`` (which is not imported: it needs ``pkg_resources``)."""
import os

import torch

from .handler import PREFIX
from . import weights

_PACKAGED = os.path.join(os.path.dirname(__file__), "configs")  # copied in by setup.py's build
_CHECKOUT = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def configs_root() -> str:
    """The configs folder: the one shipped in the package, else a checkout's ``configs/``."""
    for root in (_PACKAGED, _CHECKOUT):
        if os.path.isdir(root):
            return os.path.abspath(root)
    raise RuntimeError("alignment_det's configs were not found: reinstall the package.")


def list_configs():
    """Every zoo config path (relative to configs/), e.g. ``quick_schedules/mal_instant_test.py``."""
    root = configs_root()
    out = []
    for dirpath, _, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep)[0] == "common" or "__pycache__" in rel:
            continue
        out += [os.path.normpath(os.path.join(rel, f)) for f in files if f.endswith(".py") and not f.startswith("_")]
    return sorted(p for p in out if not p.endswith("instant_common.py"))


def get_config_file(config_path: str) -> str:
    """Absolute path of a zoo config such as ``mal_R101.py``."""
    path = os.path.join(configs_root(), config_path)
    if not os.path.isfile(path):
        raise RuntimeError(f"{config_path} is not in the model zoo (see alignment_det.model_zoo.list_configs()).")
    return path


def get_checkpoint_url(config_path: str) -> str:
    """The ``alignment_det://`` URL of the trained weights of ``config_path``."""
    if config_path not in weights.CHECKPOINTS:
        have = sorted(weights.CHECKPOINTS) or "none yet"
        raise RuntimeError(f"No trained weights are published for {config_path}. Configs with weights: {have}.")
    return PREFIX + weights.CHECKPOINTS[config_path].path


def get_config(config_path: str, trained: bool = False):
    """The LazyConfig of a zoo config; ``trained=True`` points init_checkpoint at its weights."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(get_config_file(config_path))
    if trained:
        cfg.train.init_checkpoint = get_checkpoint_url(config_path)
    return cfg


def get(config_path: str, trained: bool = False, device=None) -> torch.nn.Module:
    """A model built from a zoo config, with its trained weights when ``trained``.

    Loading is strict, as for ``--eval-only``: a checkpoint that leaves any model parameter
    uninitialised raises ``CheckpointMismatchError``, an unreadable one ``CheckpointUnreadableError``.
    """
    from detectron2.config import instantiate

    from ..engine.checkpoint import CheckedCheckpointer  # local: the engine imports this package

    cfg = get_config(config_path, trained)
    if device is None and not torch.cuda.is_available():
        device = "cpu"
    model = instantiate(cfg.model)
    if device is not None:
        model = model.to(device)
    if trained:
        CheckedCheckpointer(model, strict=True).load(cfg.train.init_checkpoint)
    return model
