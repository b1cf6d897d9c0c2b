"""Malformed boxes (issue 14, item 3): each kind is counted and named in one warning with the
image ids, left out (never reinterpreted as another box), an error with strict_boxes=True,
and reported for evaluation data alike."""
import json
import logging

import numpy as np
import pytest
from PIL import Image
from _requires import detectron2_or_skip

detectron2_or_skip()

from detectron2.config import LazyConfig  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402
from _cli import instant_config  # noqa: E402

from alignment_det.data import (  # noqa: E402
    MalformedBoxesError,
    find_malformed_boxes,
    get_dataset_dicts,
    make_synthetic_coco,
    register_coco_json,
)
from alignment_det.engine import Trainer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402

# (kind, XYWH box) for an image of width >= 128 and height >= 96 (the synthetic set's minimum).
BAD_BOXES = {
    "nan_x": ("nan", [float("nan"), 5.0, 20.0, 20.0]),
    "inf_w": ("nan", [5.0, 5.0, float("inf"), 20.0]),
    "negative_width": ("negative_size", [40.0, 5.0, -20.0, 20.0]),
    "negative_height": ("negative_size", [5.0, 40.0, 20.0, -20.0]),
    "zero_width": ("zero_size", [5.0, 5.0, 0.0, 20.0]),
    "zero_height": ("zero_size", [5.0, 5.0, 20.0, 0.0]),
    "right_of_image": ("outside_image", [10000.0, 5.0, 20.0, 20.0]),
    "above_image": ("outside_image", [5.0, -50.0, 20.0, 30.0]),
}
WORDS = {
    "nan": "NaN or infinite coordinates",
    "negative_size": "negative width or height",
    "zero_size": "zero width or height",
    "outside_image": "entirely outside the image",
}


def dataset_with(tmp_path, name, boxes, image_index=1):
    """Register a 3-image synthetic COCO json with ``boxes`` (XYWH) added to its second image."""
    json_file = make_synthetic_coco(str(tmp_path / name), num_images=3, seed=0)
    data = json.load(open(json_file))
    image = data["images"][image_index]
    for k, box in enumerate(boxes):
        data["annotations"].append(
            dict(id=1000 + k, image_id=image["id"], category_id=1, bbox=box, area=1.0, iscrowd=0)
        )
    json.dump(data, open(json_file, "w"))
    register_coco_json(name, json_file, str(tmp_path / name))
    return data, image["id"]


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.getMessage()]


@pytest.mark.parametrize("case", list(BAD_BOXES))
def test_each_kind_is_counted_named_and_left_out(tmp_path, caplog, case):
    kind, box = BAD_BOXES[case]
    name = f"ad_bad_{case}"
    data, image_id = dataset_with(tmp_path, name, [box])
    with caplog.at_level(logging.WARNING, logger="alignment_det"):
        dicts = get_dataset_dicts(name)
    (message,) = warnings_of(caplog)
    total = len(data["annotations"])
    assert f"Dataset {name!r}: 1 of {total} boxes are malformed: 1 {WORDS[kind]} (image ids {image_id})." in message
    assert "strict_boxes=True" in message
    assert sum(len(d["annotations"]) for d in dicts) == total - 1
    assert all(np.isfinite(a["bbox"]).all() and a["bbox"][2] > 0 and a["bbox"][3] > 0 for d in dicts for a in d["annotations"])


@pytest.mark.parametrize("case", list(BAD_BOXES))
def test_strict_boxes_makes_each_kind_an_error(tmp_path, case):
    kind, box = BAD_BOXES[case]
    dataset_with(tmp_path, f"ad_strict_{case}", [box])
    with pytest.raises(MalformedBoxesError, match=WORDS[kind]):
        get_dataset_dicts(f"ad_strict_{case}", strict_boxes=True)


def test_several_kinds_in_one_warning_with_the_first_image_ids(tmp_path, caplog):
    json_file = make_synthetic_coco(str(tmp_path / "many"), num_images=8, seed=0)
    data = json.load(open(json_file))
    ids = [im["id"] for im in data["images"]]
    for k, image_id in enumerate(ids):  # a negative width in every image, a NaN in the first two
        data["annotations"].append(dict(id=2000 + k, image_id=image_id, category_id=1, bbox=[30, 5, -10, 10], iscrowd=0))
    for k, image_id in enumerate(ids[:2]):
        data["annotations"].append(dict(id=3000 + k, image_id=image_id, category_id=2, bbox=[1, float("nan"), 3, 3], iscrowd=0))
    json.dump(data, open(json_file, "w"))
    register_coco_json("ad_bad_many", json_file, str(tmp_path / "many"))
    with caplog.at_level(logging.WARNING, logger="alignment_det"):
        get_dataset_dicts("ad_bad_many")
    (message,) = warnings_of(caplog)
    assert "10 of" in message
    assert f"2 NaN or infinite coordinates (image ids {ids[0]}, {ids[1]})" in message
    assert f"8 negative width or height (image ids {', '.join(map(str, ids[:5]))}, ...)" in message


def test_a_negative_width_is_never_reinterpreted_as_another_box(tmp_path):
    # Detectron2's mapper turns XYWH (40, 5, -20, 20) into corners (40, 5) and (20, 25), and
    # apply_box takes their min / max: the valid box (20, 5, 40, 25) would be trained on.
    dataset_with(tmp_path, "ad_negative", [[40.0, 5.0, -20.0, 20.0]])
    mapper = DatasetMapper(is_train=True, augmentations=[T.NoOpTransform()], image_format="BGR")
    reinterpreted = [20.0, 5.0, 40.0, 25.0]
    for d in get_dataset_dicts("ad_negative"):
        boxes = mapper(d)["instances"].gt_boxes.tensor.tolist()
        assert reinterpreted not in boxes


def test_xyxy_boxes_and_unknown_image_sizes(tmp_path):
    # A dataset registered as a function, in XYXY_ABS: x1 < x0 is a negative width.
    for stem in "ab":  # the images must exist: get_dataset_dicts checks them
        Image.new("RGB", (50, 50)).save(tmp_path / f"{stem}.jpg")
    dicts = [
        dict(file_name=str(tmp_path / "a.jpg"), image_id="a", height=50, width=50, annotations=[
            dict(bbox=[30, 5, 10, 20], bbox_mode=BoxMode.XYXY_ABS, category_id=0),  # negative width
            dict(bbox=[5, 5, 10, 20], bbox_mode=BoxMode.XYXY_ABS, category_id=0),  # fine
            dict(bbox=[60, 5, 70, 20], bbox_mode=BoxMode.XYXY_ABS, category_id=0),  # right of the image
        ]),
        dict(file_name=str(tmp_path / "b.jpg"), image_id="b", annotations=[  # no size: the outside check is skipped
            dict(bbox=[600, 5, 700, 20], bbox_mode=BoxMode.XYXY_ABS, category_id=0),
        ]),
    ]
    found = find_malformed_boxes(dicts)
    assert found == {"nan": [], "negative_size": [(0, 0)], "zero_size": [], "outside_image": [(0, 2)]}
    DatasetCatalog.register("ad_xyxy", lambda: [dict(d) for d in dicts])
    MetadataCatalog.get("ad_xyxy").set(thing_classes=["thing"])
    out = get_dataset_dicts("ad_xyxy")
    assert [a["bbox"] for a in out[0]["annotations"]] == [[5, 5, 10, 20]]
    assert len(dicts[0]["annotations"]) == 3, "the registered list must not be modified"


def test_strict_boxes_override_survives_save_and_load_and_applies_to_training(tmp_path):
    dataset_with(tmp_path, "ad_strict_cfg", [BAD_BOXES["zero_width"][1]])
    cfg = load_config(instant_config("retinanet_instant_test.py"), [
        "dataloader.train.dataset.names=ad_strict_cfg", "dataloader.train.dataset.strict_boxes=True",
    ])
    LazyConfig.save(cfg, str(tmp_path / "cfg.yaml"))
    again = LazyConfig.load(str(tmp_path / "cfg.yaml"))
    assert again.dataloader.train.dataset.strict_boxes is True
    with pytest.raises(MalformedBoxesError, match="ad_strict_cfg"):
        Trainer.build_train_loader(again)


def test_evaluation_data_gets_the_same_warning(tmp_path, caplog):
    dataset_with(tmp_path, "ad_bad_eval", [BAD_BOXES["negative_height"][1]])
    cfg = load_config(instant_config("retinanet_instant_test.py"), ["dataloader.test.dataset.names=ad_bad_eval"])
    with caplog.at_level(logging.WARNING, logger="alignment_det"):
        Trainer.build_test_loader(cfg)
    (message,) = warnings_of(caplog)
    assert "Dataset 'ad_bad_eval'" in message and "1 negative width or height" in message
