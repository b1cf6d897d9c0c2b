"""A missing optional dependency is an ImportError that names the setup.py extra to install."""
import os
import subprocess
import sys

import pytest

from alignment_det.utils.optional import MissingExtraError, import_optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_present_module_is_returned():
    assert import_optional("json", extra="d2") is __import__("json")


def test_missing_module_names_the_extra_and_the_package():
    with pytest.raises(MissingExtraError, match=r"pip install 'alignment_det\[export\]'") as e:
        import_optional("no_such_module_xyz", extra="export", package="no-such-pkg", purpose="ONNX export")
    assert "no-such-pkg is needed for ONNX export" in str(e.value)
    assert isinstance(e.value, ImportError)


def test_synthetic_dataset_without_opencv_names_the_d2_extra(tmp_path):
    pytest.importorskip("detectron2")
    # sys.modules["cv2"] = None makes "import cv2" raise ImportError, as if OpenCV were absent.
    code = (
        "import sys; sys.modules['cv2'] = None\n"
        "from alignment_det.data.synthetic import make_synthetic_coco\n"
        f"make_synthetic_coco({str(tmp_path / 'out')!r}, num_images=1, seed=0)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "MissingExtraError" in proc.stderr and "alignment_det[d2]" in proc.stderr and "opencv-python-headless" in proc.stderr
