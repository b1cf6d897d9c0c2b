"""Loading LazyConfig files the way ``train_net.py`` does, with three additions over
``LazyConfig.load`` + ``LazyConfig.apply_overrides``:

* ``--config-file`` may name a model-zoo config (``mal_R101.py``) when the file is not
  found on disk, so an installed package works without a checkout;
* an override whose key does not exist is an error with close matches, not a silently
  created new key (``apply_overrides`` uses ``OmegaConf.update(merge=True)``, which
  happily adds ``train.max_itr``);
* an override whose value does not fit the type of the key it replaces is an error
  naming the key, the value and the type (``train.max_iter=abc`` would otherwise fail
  deep inside the LR scheduler), before anything is built.
"""
import ast
import collections.abc
import difflib
import inspect
import os
import typing
from typing import Any, Dict, List, Optional, Sequence

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig, OmegaConf

from .zoo_configs import get_config_file

#: A LazyCall target that passes its ``**kwargs`` on to another callable names, in this
#: attribute, the config key holding that callable's dotted path (e.g. ALWA's
#: ``build_with_alwa`` forwards to ``detector_class``): the override checks then know the
#: keyword arguments of that callable too.
FORWARDS_KWARGS_TO = "forwards_kwargs_to"


def resolve_config_file(config_file: str) -> str:
    """Return a path to ``config_file``: as given if it exists, else from the model zoo."""
    if os.path.isfile(config_file):
        return config_file
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


def _locate(target):
    if isinstance(target, str):
        try:
            return locate(target)
        except Exception:  # noqa: BLE001 - an unresolvable target just has no known params
            return None
    return target


def _target_params(target) -> Dict[str, inspect.Parameter]:
    """Keyword parameters a LazyCall target accepts, following ``**kwargs`` up the MRO
    (a subclass that forwards ``**kwargs`` accepts its base class's arguments too)."""
    target = _locate(target)
    if target is None:
        return {}
    funcs = [c.__init__ for c in inspect.getmro(target) if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    params: Dict[str, inspect.Parameter] = {}
    for fn in funcs:
        try:
            signature = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            break
        for p in signature:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                params.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in signature):
            break
    return params


def _node_params(node: DictConfig) -> Dict[str, inspect.Parameter]:
    """:func:`_target_params` of a LazyCall node, plus those of the callable its target
    forwards ``**kwargs`` to (see :data:`FORWARDS_KWARGS_TO`)."""
    target = _locate(node._target_)
    params = _target_params(target)
    forward_key = getattr(target, FORWARDS_KWARGS_TO, None)
    if forward_key and isinstance(node.get(forward_key, None), str):
        for name, p in _target_params(node[forward_key]).items():
            params.setdefault(name, p)
    return params


def _target_param(cfg, key: str) -> Optional[inspect.Parameter]:
    """The parameter ``name`` of the LazyCall at ``a.b`` for ``key`` = ``a.b.name``, if any."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if not isinstance(parent, DictConfig) or "_target_" not in parent:
        return None
    return _node_params(parent).get(name)


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
        if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING or _target_param(cfg, key) is not None:
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


# ----------------------------------------------------------------------------- types
def parse_override_value(text: str) -> Any:
    """The Python value of an override's right-hand side, as ``LazyConfig.apply_overrides``
    will store it: Hydra's grammar when Hydra is installed, else ``ast.literal_eval``."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
    except ImportError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return OverridesParser.create().parse_overrides([f"k={text}"])[0].value()


_TYPE_NAMES = {bool: "a bool", int: "an int", float: "a float", str: "a str", list: "a list", dict: "a dict",
               type(None): "null"}


def _type_name(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _fits(value, expected: type) -> bool:
    """The type rules of typed overrides: bool only true/false; int not bool; float int or float."""
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if expected is list:
        return isinstance(value, (list, tuple))
    if expected is dict:
        return isinstance(value, dict)
    return True


def _types_of_annotation(annotation) -> Optional[List[type]]:
    """The override types an annotation admits (``Union``/``Optional`` give several), or
    None when it says nothing the rules can use (a class such as ``nn.Module``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        out = []
        for arg in typing.get_args(annotation):
            sub = _types_of_annotation(arg)
            if sub is None:
                return None
            out += sub
        return out
    if annotation is type(None):
        return [type(None)]
    if annotation in (bool, int, float, str):
        return [annotation]
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple, typing.Sequence):
        return [list]
    return None


def _expected_types(cfg, key: str) -> Optional[List[type]]:
    """The types an override of ``key`` may have, or None for "anything"."""
    param = _target_param(cfg, key)
    if param is not None and param.annotation is not inspect.Parameter.empty:
        annotated = _types_of_annotation(param.annotation)
        if annotated is not None:
            return annotated
    current = OmegaConf.select(cfg, key, default=_MISSING)
    if current is _MISSING:  # a target's argument left at its default: the default's type
        if param is None or param.default is inspect.Parameter.empty:
            return None
        current = param.default
    if current is None:  # None-valued keys accept anything
        return None
    if isinstance(current, DictConfig):
        return [dict]
    if isinstance(current, (ListConfig, list, tuple)):
        return [list]
    for t in (bool, int, float, str):  # bool before int: True is an int in Python
        if isinstance(current, t):
            return [t]
    return None


def check_override_types(cfg, overrides: Sequence[str]) -> None:
    """Raise TypeError for an override whose value does not fit the type of its key.

    int keys take ints, float keys ints and floats, bool keys true/false, str keys strings,
    list keys lists, config nodes dicts; keys whose value is None take anything. Where the
    key is an argument of a LazyCall target with a type annotation, the annotation decides
    (``names: Union[str, Sequence[str]]`` takes a name or a list of names). Keys added with
    ``+`` and interpolations (``${...}``) are not checked.
    """
    for o in overrides:
        key, _, text = o.partition("=")
        key = key.strip()
        if key.startswith(("+", "~")):
            continue
        value = parse_override_value(text)
        if isinstance(value, str) and "${" in value:
            continue
        try:
            expected = _expected_types(cfg, key)
        except Exception:  # noqa: BLE001 - an interpolation that does not resolve: nothing to compare
            continue
        if expected is None or any(_fits(value, t) for t in expected):
            continue
        names = " or ".join(_TYPE_NAMES[t] for t in expected)
        hint = ""
        if str in expected and not isinstance(value, (list, dict)):
            hint = f" To pass the text {text!r} as a string, quote it: {key}='\"{text}\"'."
        elif list in expected:
            hint = f" Write a list, e.g. {key}=[{text}]."
        raise TypeError(
            f"Config override {o!r}: {key} expects {names}, got {text!r} ({_type_name(value)}).{hint}"
        )


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply ``key=value`` overrides to a loaded config, strictly: unknown keys and values of
    the wrong type are errors before anything is built."""
    overrides = list(overrides)
    check_override_keys(cfg, overrides)
    check_override_types(cfg, overrides)
    # Hydra's grammar accepts "+key=value" for additions; LazyConfig wants the bare key.
    overrides = [o[1:] if o.startswith("+") else o for o in overrides]
    return LazyConfig.apply_overrides(cfg, overrides)


def load_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a LazyConfig file (or zoo name) and apply ``key=value`` overrides, strictly."""
    return apply_overrides(LazyConfig.load(resolve_config_file(config_file)), overrides)


def instantiate_with(node: DictConfig, **built):
    """``instantiate(node)`` with some arguments passed as already-built objects.

    For arguments that cannot live in a config (a built model, a list of dataset dicts):
    the other arguments are instantiated as ``detectron2.config.instantiate`` does, then the
    target is called with both. ``node`` itself is not modified.
    """
    target = _locate(node._target_)
    if target is None:
        raise ImportError(f"Cannot import the config's _target_ {node._target_!r}")
    kwargs = {k: instantiate(v) for k, v in node.items() if k != "_target_" and k not in built}
    return target(**kwargs, **built)
