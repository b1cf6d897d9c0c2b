"""Config assertions shared by tests: a derived config (a control, an ablation, a diagnostic) is its
base config with a few keys set, and nothing else."""
import copy
from typing import Any, Mapping, Tuple

from omegaconf import OmegaConf

# A switch's base value when the base config does not have the key at all (the derived config adds it).
ABSENT = object()


def assert_differs_only_in(config, base, switches: Mapping[str, Tuple[Any, Any]]) -> None:
    """``config`` equals ``base`` except at the dotted keys of ``switches``, each mapped to
    ``(value in config, value in base)``; a base value of :data:`ABSENT` means the base lacks the key.
    Neither argument is changed."""
    config, base = copy.deepcopy(config), copy.deepcopy(base)
    for key, (value, base_value) in switches.items():
        assert (OmegaConf.select(config, key), OmegaConf.select(base, key, default=ABSENT)) == (value, base_value), key
        if base_value is ABSENT:
            parent, _, leaf = key.rpartition(".")
            del (OmegaConf.select(config, parent) if parent else config)[leaf]
        else:
            OmegaConf.update(config, key, base_value, merge=False)
    assert OmegaConf.to_yaml(config) == OmegaConf.to_yaml(base)
