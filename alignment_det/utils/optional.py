"""Imports of optional dependencies that fail with the ``pip install`` that fixes them.

The package's extras (``setup.py``) group what each layer needs beyond torch/numpy/scipy:
``d2`` for the Detectron2 layer's own imports (Detectron2 itself is built from source),
``export`` for ONNX, ``analysis`` for the TIDE breakdown. A missing one should not surface as
a bare ``ModuleNotFoundError`` deep inside a tool, but name the extra.
"""
import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "import_optional"]


class MissingExtraError(ImportError):
    pass


def import_optional(module: str, *, extra: str, package: str = "", purpose: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or an ImportError that names the extra to install.

    Args:
        module: import name, e.g. ``"cv2"``.
        extra: the setup.py extra that lists it, e.g. ``"d2"``.
        package: its PyPI name when it differs from ``module`` (``"opencv-python-headless"``).
        purpose: what needs it, for the message ("the synthetic dataset").
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        need = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"{package or module} is needed{need} but cannot be imported ({e}). "
            f"Install the extra: pip install 'alignment_det[{extra}]' (from a checkout: pip install -e '.[{extra}]')."
        ) from e
