"""Model zoo: configs shipped with the package and (once published) their weights.

Importing it registers the ``alignment_det://`` prefix on Detectron2's PathManager, so
``train.init_checkpoint=alignment_det://...`` works in any config.
"""
from .handler import ENV_VAR, PREFIX, ChecksumError, register_handler
from .model_zoo import configs_root, get, get_checkpoint_url, get_config, get_config_file, list_configs
from .weights import CHECKPOINTS, register_checkpoint

register_handler()

__all__ = [
    "CHECKPOINTS", "ENV_VAR", "PREFIX", "ChecksumError", "configs_root", "get", "get_checkpoint_url",
    "get_config", "get_config_file", "list_configs", "register_checkpoint",
]
