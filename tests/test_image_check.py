"""Every image of the datasets in use is checked before training and before evaluation; a read
that fails later names its file (issue 19, item 3)."""
import logging
import os

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

from _cli import instant_config  # noqa: E402
from detectron2.config import instantiate  # noqa: E402

from alignment_det.data import SYNTHETIC_CLASSES, make_synthetic_coco, make_synthetic_voc  # noqa: E402
from alignment_det.data import get_dataset_dicts, register_coco_json, register_voc  # noqa: E402
from alignment_det.data import image_check  # noqa: E402
from alignment_det.data.image_check import BadImagesError, ImageReadError  # noqa: E402
from alignment_det.engine import Trainer, build_model  # noqa: E402
from alignment_det.config import load_config  # noqa: E402

CONFIG = instant_config("fcos_instant_test.py")


def _broken_coco(tmp_path, name):
    """A 4-image COCO set with image 2 missing and image 3 not an image; returns their paths."""
    folder = tmp_path / name
    register_coco_json(name, make_synthetic_coco(str(folder), num_images=4, seed=0), str(folder))
    missing, garbage = folder / "00002.png", folder / "00003.png"
    os.remove(missing)
    garbage.write_bytes(b"not a png at all")
    return str(missing), str(garbage)


def test_bad_training_images_are_listed_by_file_before_training(tmp_path, monkeypatch):
    missing, garbage = _broken_coco(tmp_path, "ad_imgcheck_train")
    cfg = load_config(CONFIG, ["dataloader.train.dataset.names=ad_imgcheck_train", f"train.output_dir={tmp_path}"])
    monkeypatch.setattr(Trainer, "build_model", lambda *a: pytest.fail("the model was built before the images were checked"))
    with pytest.raises(BadImagesError) as e:
        Trainer(cfg)
    msg = str(e.value)
    assert "'ad_imgcheck_train': 2 of 4 images are missing or unreadable" in msg
    assert f"  {missing}: missing\n" in msg and f"  {garbage}: UnidentifiedImageError" in msg
    assert "dataloader.train.dataset.skip_bad_images=True" in msg


def test_a_missing_test_image_stops_training_before_it_starts(tmp_path):
    missing, _ = _broken_coco(tmp_path, "ad_imgcheck_test")
    cfg = load_config(CONFIG, ["dataloader.test.dataset.names=ad_imgcheck_test", f"train.output_dir={tmp_path}"])
    with pytest.raises(BadImagesError, match=f"'ad_imgcheck_test': 2 of 4 images .*\n  {missing}: missing"):
        Trainer(cfg)


def test_a_missing_test_image_stops_evaluation_before_inference(tmp_path, forbid_inference):
    missing, _ = _broken_coco(tmp_path, "ad_imgcheck_eval")
    cfg = load_config(CONFIG, ["dataloader.test.dataset.names=ad_imgcheck_eval", f"train.output_dir={tmp_path}"])
    model = build_model(cfg)
    with pytest.raises(BadImagesError, match=missing):
        Trainer.test(cfg, model)


def test_skip_bad_images_leaves_them_out_with_one_warning(tmp_path, caplog):
    missing, garbage = _broken_coco(tmp_path, "ad_imgcheck_skip")
    cfg = load_config(CONFIG, ["dataloader.train.dataset.names=ad_imgcheck_skip",
                               "dataloader.train.dataset.skip_bad_images=True"])
    with caplog.at_level(logging.WARNING, logger="alignment_det"):
        dicts = instantiate(cfg.dataloader.train.dataset)
    (warning,) = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert missing in warning and garbage in warning and "left out (skip_bad_images=True)" in warning
    kept = {d["file_name"] for d in dicts}
    assert kept == {str(tmp_path / "ad_imgcheck_skip" / f"0000{i}.png") for i in (1, 4)}


def test_a_truncated_jpeg_passes_the_header_check_and_its_read_names_the_file(tmp_path):
    root = make_synthetic_voc(str(tmp_path / "voc"), {"train": 2})
    register_voc("ad_imgcheck_truncated", root, "train", class_names=SYNTHETIC_CLASSES)
    for stem in ("train_0001", "train_0002"):
        path = os.path.join(root, "JPEGImages", stem + ".jpg")
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])  # header intact, scan data cut
    assert len(get_dataset_dicts("ad_imgcheck_truncated")) == 2  # verify() passes a truncated JPEG
    cfg = load_config(CONFIG, ["dataloader.train.dataset.names=ad_imgcheck_truncated"])
    loader = Trainer.build_train_loader(cfg)
    with pytest.raises(ImageReadError, match=r"Reading image .*/JPEGImages/train_000[12]\.jpg .*image file is truncated"):
        next(iter(loader))


def test_large_sets_log_their_progress(tmp_path, caplog, monkeypatch):
    folder = tmp_path / "progress"
    make_synthetic_coco(str(folder), num_images=3, seed=0)
    dicts = [dict(file_name=str(folder / f"0000{i}.png")) for i in (1, 2, 3)]
    # A "large" set of 3 images, one per task of the pool, a progress line after each.
    monkeypatch.setattr(image_check, "PROGRESS_MIN_IMAGES", 3)
    monkeypatch.setattr(image_check, "_CHUNK", 1)
    monkeypatch.setattr(image_check, "_PROGRESS_PERIOD_S", 0.0)
    with caplog.at_level(logging.INFO, logger="alignment_det"):
        image_check.check_images(dicts, dataset="tiny")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Checking the 3 images of dataset 'tiny'")
    assert [m.split(" images")[0] for m in lines[1:3]] == ["Checked 1/3", "Checked 2/3"]
    assert lines[3].startswith("Checked the 3 images of 'tiny' in") and lines[3].endswith(": 0 bad.")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alignment_det"):
        image_check.check_images(dicts[:2], dataset="tiny")  # below PROGRESS_MIN_IMAGES: silent
    assert not caplog.records
