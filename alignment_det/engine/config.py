"""Loading LazyConfig files the way ``train_net.py`` does, with two additions over
``LazyConfig.load`` + ``LazyConfig.apply_overrides``:

* ``--config-file`` may name a model-zoo config (``mal_R101.py``) when the file is not
  found on disk, so an installed package works without a checkout;
* an override whose key does not exist is an error with close matches, not a silently
  created new key (``apply_overrides`` uses ``OmegaConf.update(merge=True)``, which
  happily adds ``train.max_itr``).
"""
import difflib
import inspect
import os
from typing import List, Sequence, Set

from detectron2.config import LazyConfig
from omegaconf import DictConfig, ListConfig, OmegaConf


def resolve_config_file(config_file: str) -> str:
    """Return a path to ``config_file``: as given if it exists, else from the model zoo."""
    if os.path.isfile(config_file):
        return config_file
    from ..model_zoo import get_config_file  # local import: model_zoo imports this module's peers

    try:
        return get_config_file(config_file)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"Config file {config_file!r} does not exist, and it is not a model-zoo config "
            f"either ({e})."
        ) from None


def _all_keys(cfg, prefix: str = "") -> List[str]:
    keys = []
    if isinstance(cfg, DictConfig):
        items = ((str(k), cfg._get_node(k)) for k in cfg.keys())
    elif isinstance(cfg, ListConfig):
        items = ((str(i), cfg._get_node(i)) for i in range(len(cfg)))
    else:
        return keys
    for k, node in items:
        full = f"{prefix}.{k}" if prefix else k
        keys.append(full)
        if isinstance(node, (DictConfig, ListConfig)):
            keys.extend(_all_keys(node, full))
    return keys


def _target_params(target) -> Set[str]:
    """Keyword parameters a LazyCall target accepts, following ``**kwargs`` up the MRO
    (a subclass that forwards ``**kwargs`` accepts its base class's arguments too)."""
    if isinstance(target, str):
        from detectron2.utils.registry import locate

        try:
            target = locate(target)
        except Exception:  # noqa: BLE001 - an unresolvable target just has no known params
            return set()
    funcs = [c.__init__ for c in inspect.getmro(target) if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    names: Set[str] = set()
    for fn in funcs:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            break
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _is_target_param(cfg, key: str) -> bool:
    """Is ``key`` (``a.b.name``) an argument, left at its default, of the LazyCall at ``a.b``?"""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if not isinstance(parent, DictConfig) or "_target_" not in parent:
        return False
    return name in _target_params(parent._target_)


def check_override_keys(cfg, overrides: Sequence[str]) -> None:
    """Raise KeyError for an override ``a.b=c`` whose key ``a.b`` is not in ``cfg``.

    Allowed besides existing keys: an argument of a LazyCall target that the config
    leaves at its default (``model.test_score_thresh`` for RetinaNet), and any key
    prefixed with ``+`` (added on purpose, as in Hydra).
    """
    known = None
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"Override {o!r} is not of the form key=value.")
        key = o.split("=", 1)[0].strip()
        if key.startswith(("+", "~")):
            continue
        if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING or _is_target_param(cfg, key):
            continue
        if known is None:
            known = _all_keys(cfg)
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"Config override {o!r}: key {key!r} does not exist in the config.{hint} "
            "Prefix it with '+' to add a new key on purpose."
        )


_MISSING = object()


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply ``key=value`` overrides to a loaded config, strictly (see :func:`check_override_keys`)."""
    overrides = list(overrides)
    check_override_keys(cfg, overrides)
    # Hydra's grammar accepts "+key=value" for additions; LazyConfig wants the bare key.
    overrides = [o[1:] if o.startswith("+") else o for o in overrides]
    return LazyConfig.apply_overrides(cfg, overrides)


def load_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a LazyConfig file (or zoo name) and apply ``key=value`` overrides, strictly."""
    return apply_overrides(LazyConfig.load(resolve_config_file(config_file)), overrides)
