"""Where the zoo's config files are: shipped in the package (``alignment_det/model_zoo/configs``,
copied in by setup.py's build) or a checkout's ``configs/``.

On the config floor, not in :mod:`alignment_det.model_zoo`, because ``--config-file mal_R101.py``
(:func:`alignment_det.config.resolve_config_file`) looks zoo names up below the engine;
``model_zoo`` re-exports these functions as its public API.
"""
import os

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGED = os.path.join(_PACKAGE, "model_zoo", "configs")  # copied in by setup.py's build
_CHECKOUT = os.path.join(_PACKAGE, "..", "configs")


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
