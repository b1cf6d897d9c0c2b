import os
import sys
import tempfile

import pytest

# One synthetic-dataset cache per test session unless the caller chose one.
os.environ.setdefault("ALIGNMENT_DET_CACHE", os.path.join(tempfile.gettempdir(), "alignment_det_test_cache"))
# Lets test modules import the helpers beside them (_requires, _cli) under any import mode.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def forbid_inference(monkeypatch):
    """Fails the test when ``Trainer.test`` reaches inference: for checks that must come first."""
    monkeypatch.setattr(
        "alignment_det.engine.trainer.inference_on_dataset",
        lambda *a, **k: pytest.fail("inference ran before the check"),
    )
