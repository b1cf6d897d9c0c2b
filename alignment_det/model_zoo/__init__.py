"""Model zoo: configs shipped with the package and (once published) their weights.

The top floor, as ``detectron2.model_zoo``: ``get`` / ``get_config`` / ``get_checkpoint_url``
built on :mod:`alignment_det.config` and :mod:`alignment_det.checkpoint`, which hold the config
files, the weights table and the ``alignment_det://`` prefix (registered on Detectron2's
PathManager when :mod:`alignment_det.checkpoint` is imported, so
``train.init_checkpoint=alignment_det://...`` works in any config); they are re-exported here.
"""
from ..checkpoint.catalog import CHECKPOINTS, register_checkpoint
from ..checkpoint.handler import ENV_VAR, PREFIX, ChecksumError
from ..config.zoo_configs import configs_root, get_config_file, list_configs
from .model_zoo import get, get_checkpoint_url, get_config

__all__ = [
    "CHECKPOINTS", "ENV_VAR", "PREFIX", "ChecksumError", "configs_root", "get", "get_checkpoint_url",
    "get_config", "get_config_file", "list_configs", "register_checkpoint",
]
