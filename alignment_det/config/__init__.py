"""Configs: LazyConfig loading with strict, typed overrides (:mod:`.lazy`), the zoo's config
files (:mod:`.zoo_configs`), presets that scale every zoo config down alike (:mod:`.presets`)
and LR schedules (:mod:`.schedules`)."""
from .lazy import (
    FORWARDS_KWARGS_TO,
    apply_overrides,
    check_override_keys,
    check_override_types,
    instantiate_with,
    load_config,
    parse_override_value,
    resolve_config_file,
)
from .zoo_configs import configs_root, get_config_file, list_configs

__all__ = [
    "FORWARDS_KWARGS_TO", "apply_overrides", "check_override_keys", "check_override_types", "configs_root",
    "get_config_file", "instantiate_with", "list_configs", "load_config", "parse_override_value",
    "resolve_config_file",
]
