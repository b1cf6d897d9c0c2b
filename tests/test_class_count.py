"""The model's number of classes against the data (issue 14, item 2), and the other up-front
checks of a config against the machine: each is an error before training or evaluation."""
import json

import pytest
import torch
from _requires import detectron2_or_skip

detectron2_or_skip()

from _cli import instant_config, train_net  # noqa: E402

from alignment_det.data import make_synthetic_coco, register_coco_json  # noqa: E402
from alignment_det.engine import Trainer, build_model  # noqa: E402
from alignment_det.engine.checks import (  # noqa: E402
    ClassCountMismatchError,
    ClassNamesMismatchError,
    check_device,
    model_num_classes,
)
from alignment_det.config import load_config  # noqa: E402
from alignment_det.model_zoo import get_config_file  # noqa: E402

INSTANT = ["retinanet_instant_test.py", "fcos_instant_test.py", "mal_instant_test.py", "date_instant_test.py",
           "retinanet_conf_instant_test.py", "retinanet_alwa_instant_test.py"]


@pytest.mark.parametrize("name", INSTANT)
@pytest.mark.parametrize("num_classes", [2, 5], ids=["fewer", "more"])
def test_training_data_with_another_number_of_classes_is_an_error(name, num_classes):
    # The synthetic set has 3 classes: rectangle, ellipse, triangle.
    cfg = load_config(instant_config(name), [f"model.num_classes={num_classes}"])
    with pytest.raises(ClassCountMismatchError) as e:
        Trainer.build_train_loader(cfg)
    assert str(e.value) == (
        f"model.num_classes={num_classes}, but the dataset of dataloader.train 'synthetic_shapes_train' has 3 "
        "classes (rectangle, ellipse, triangle). Set model.num_classes=3 (README: 'Training on your own dataset')."
    )


@pytest.mark.parametrize("num_classes", [2, 5], ids=["fewer", "more"])
def test_evaluation_data_with_another_number_of_classes_is_an_error_before_inference(num_classes, forbid_inference):
    cfg = load_config(instant_config("fcos_instant_test.py"), [f"model.num_classes={num_classes}"])
    model = build_model(cfg)
    with pytest.raises(ClassCountMismatchError, match="dataloader.test 'synthetic_shapes_val' has 3 classes"):
        Trainer.test(cfg, model)


def test_the_evaluators_dataset_is_checked_too(tmp_path, forbid_inference):
    # Test loader on the 3-class synthetic val set, evaluator on a 2-class dataset.
    json_file = make_synthetic_coco(str(tmp_path / "two"), num_images=2, seed=0)
    data = json.load(open(json_file))
    data["categories"] = data["categories"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 2]
    json.dump(data, open(json_file, "w"))
    register_coco_json("ad_two_classes", json_file, str(tmp_path / "two"))  # never loaded before the check
    cfg = load_config(instant_config("fcos_instant_test.py"), ["dataloader.evaluator.dataset_name=ad_two_classes"])
    model = build_model(cfg)
    with pytest.raises(ClassCountMismatchError, match=r"evaluator's dataset .*'ad_two_classes' has 2 classes"):
        Trainer.test(cfg, model)
    # A list of evaluators (COCO + alignment): each one's dataset is checked, and named by index.
    from omegaconf import OmegaConf

    good = OmegaConf.to_container(cfg.dataloader.evaluator, resolve=True)
    good["dataset_name"] = "synthetic_shapes_val"
    cfg.dataloader.evaluator = [good, OmegaConf.to_container(cfg.dataloader.evaluator, resolve=True)]
    with pytest.raises(ClassCountMismatchError, match=r"dataloader\.evaluator\[1\]\.dataset_name.*'ad_two_classes' has 2"):
        Trainer.test(cfg, model)


def test_a_dataset_without_class_names_is_checked_by_its_category_ids():
    from alignment_det.engine.checks import check_dataset_classes

    cfg = load_config(instant_config("fcos_instant_test.py"))
    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 3}]}]  # 4 classes at least
    with pytest.raises(ClassCountMismatchError, match="category_id 3"):
        check_dataset_classes(cfg, dicts, where="dataloader.train")
    check_dataset_classes(cfg, [{"annotations": [{"category_id": 2}]}], where="dataloader.train")


def test_the_override_named_is_the_one_that_sets_the_classes():
    assert model_num_classes(load_config(get_config_file("retinanet_R50.py"))) == ("model.num_classes", 80)
    # Faster R-CNN and the ALWA configs carry it on the model node too (roi_heads follows it).
    assert model_num_classes(load_config(get_config_file("faster_rcnn_alwa_R50.py"))) == ("model.num_classes", 80)


def test_alwa_config_with_a_wrong_class_count_stops_before_training(tmp_path):
    proc = train_net("--config-file", instant_config("retinanet_alwa_instant_test.py"), f"train.output_dir={tmp_path}",
                     "model.num_classes=5", check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "ClassCountMismatchError: model.num_classes=5, but the dataset of dataloader.train" in log
    assert "Starting training" not in log and not list(tmp_path.glob("*.pth"))


# ----------------------------------------------------------------------------- the machine
def test_a_cuda_config_on_a_machine_without_gpu_names_train_device_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(get_config_file("retinanet_R50.py"))
    assert cfg.train.device == "cuda"
    with pytest.raises(RuntimeError, match="Add train.device=cpu to the command line"):
        check_device(cfg)
    with pytest.raises(RuntimeError, match="train.device=cpu"):
        build_model(cfg)  # the one builder the trainer, --eval-only and the demo use
    cfg.train.device = "cpu"
    check_device(cfg)


# ----------------------------------------------------------------------------- class names
def _reordered_synthetic(tmp_path, name, num_images=2):
    """The synthetic shapes with their 3 category ids permuted: the same names, another order."""
    json_file = make_synthetic_coco(str(tmp_path / name), num_images=num_images, seed=1)
    data = json.load(open(json_file))
    new_id = {1: 3, 2: 1, 3: 2}  # rectangle -> 3, ellipse -> 1, triangle -> 2
    data["categories"] = [dict(c, id=new_id[c["id"]]) for c in data["categories"]]
    data["annotations"] = [dict(a, category_id=new_id[a["category_id"]]) for a in data["annotations"]]
    json.dump(data, open(json_file, "w"))
    register_coco_json(name, json_file, str(tmp_path / name))


REORDERED = "['ellipse', 'triangle', 'rectangle']"
SYNTHETIC = "['rectangle', 'ellipse', 'triangle']"


def test_test_classes_in_another_order_stop_training_before_it_starts(tmp_path):
    _reordered_synthetic(tmp_path, "ad_reordered_test")
    cfg = load_config(instant_config("fcos_instant_test.py"),
                      ["dataloader.test.dataset.names=ad_reordered_test", f"train.output_dir={tmp_path}"])
    with pytest.raises(ClassNamesMismatchError) as e:
        Trainer(cfg)
    assert str(e.value).split("\n")[1:4] == [
        f"  dataloader.train.dataset.names 'synthetic_shapes_train': {SYNTHETIC}",
        f"  dataloader.test.dataset.names 'ad_reordered_test': {REORDERED}",
        f"  dataloader.evaluator.dataset_name 'ad_reordered_test': {REORDERED}",
    ]


def test_train_classes_in_another_order_stop_training(tmp_path):
    _reordered_synthetic(tmp_path, "ad_reordered_train")
    cfg = load_config(instant_config("fcos_instant_test.py"),
                      ["dataloader.train.dataset.names=ad_reordered_train", f"train.output_dir={tmp_path}"])
    with pytest.raises(ClassNamesMismatchError, match=r"'ad_reordered_train': \['ellipse'.*\n.*'synthetic_shapes_val'"):
        Trainer(cfg)


def test_evaluator_classes_in_another_order_stop_evaluation_before_inference(tmp_path, forbid_inference):
    _reordered_synthetic(tmp_path, "ad_reordered_eval")
    cfg = load_config(instant_config("fcos_instant_test.py"), ["dataloader.evaluator.dataset_name=ad_reordered_eval"])
    model = build_model(cfg)
    with pytest.raises(ClassNamesMismatchError, match=r"dataloader.evaluator.dataset_name 'ad_reordered_eval': \['ellipse'"):
        Trainer.test(cfg, model)
