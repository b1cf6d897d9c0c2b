"""tools/demo.py draws detections of a trained checkpoint on a folder of images."""
import os
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _cli import REPO, instant_config  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tools"))
from demo import expand_inputs  # noqa: E402
from demo import main as demo_main  # noqa: E402


def test_demo_writes_drawn_images(tmp_path, instant_run, capsys):
    from alignment_det.data import make_synthetic_coco

    images = tmp_path / "images"
    make_synthetic_coco(str(images), num_images=3, seed=5)
    (images / "notes.txt").write_text("not an image")
    rc = demo_main(["--config-file", instant_config("fcos_instant_test.py"),
                    "--input", str(images), "--output", str(tmp_path / "out"), "--confidence", "0.0",
                    "model.test_score_thresh=0.0", f"train.init_checkpoint={instant_run('fcos_instant_test.py').final}"])
    assert rc == 0
    assert "3/3" in capsys.readouterr().err  # the progress bar
    assert sorted(os.listdir(tmp_path / "out")) == ["00001.png", "00002.png", "00003.png"]
    drawn, original = cv2.imread(str(tmp_path / "out" / "00001.png")), cv2.imread(str(images / "00001.png"))
    assert drawn.shape == original.shape and not np.array_equal(drawn, original), "nothing was drawn"


def test_demo_inputs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_inputs([str(tmp_path / "missing*.jpg")])
    with pytest.raises(FileNotFoundError, match="no images"):
        expand_inputs([str(tmp_path)])
