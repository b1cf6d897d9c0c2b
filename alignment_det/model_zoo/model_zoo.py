"""``get`` / ``get_config`` / ``get_checkpoint_url``, as in ``detectron2.model_zoo`` (which is
not imported: it needs ``pkg_resources``). The top floor: it builds on :mod:`alignment_det.config`
(config files) and :mod:`alignment_det.checkpoint` (the weights table, checked loading)."""
import torch
from detectron2.config import LazyConfig, instantiate

from ..checkpoint import PREFIX, CheckedCheckpointer, catalog
from ..config.zoo_configs import get_config_file


def get_checkpoint_url(config_path: str) -> str:
    """The ``alignment_det://`` URL of the trained weights of ``config_path``."""
    if config_path not in catalog.CHECKPOINTS:
        have = sorted(catalog.CHECKPOINTS) or "none yet"
        raise RuntimeError(f"No trained weights are published for {config_path}. Configs with weights: {have}.")
    return PREFIX + catalog.CHECKPOINTS[config_path].path


def get_config(config_path: str, trained: bool = False):
    """The LazyConfig of a zoo config; ``trained=True`` points init_checkpoint at its weights."""
    cfg = LazyConfig.load(get_config_file(config_path))
    if trained:
        cfg.train.init_checkpoint = get_checkpoint_url(config_path)
    return cfg


def get(config_path: str, trained: bool = False, device=None) -> torch.nn.Module:
    """A model built from a zoo config, with its trained weights when ``trained``.

    Loading is strict, as for ``--eval-only``: a checkpoint that leaves any model parameter
    uninitialised raises ``CheckpointMismatchError``, an unreadable one ``CheckpointUnreadableError``.
    """
    cfg = get_config(config_path, trained)
    if device is None and not torch.cuda.is_available():
        device = "cpu"
    model = instantiate(cfg.model)
    if device is not None:
        model = model.to(device)
    if trained:
        CheckedCheckpointer(model, strict=True).load(cfg.train.init_checkpoint)
    return model
