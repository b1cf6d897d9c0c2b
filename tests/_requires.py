"""Skip helpers for tests that need Detectron2 (installed from source, never from a registry)."""
import pytest

INSTALL_HINT = "install torchvision and Detectron2 from source as README.md says to run it"


def detectron2_or_skip():
    """Skip the calling test module, with the reason, when Detectron2 cannot be imported.

    Catches every exception, not only ImportError: a torchvision built for another torch
    fails at import with a RuntimeError, and that must skip too, not break collection.
    """
    try:
        import detectron2.modeling  # noqa: F401
        import torchvision  # noqa: F401
    except Exception as e:  # noqa: BLE001
        pytest.skip(
            f"Detectron2 is not importable here ({type(e).__name__}: {e}); {INSTALL_HINT}",
            allow_module_level=True,
        )
