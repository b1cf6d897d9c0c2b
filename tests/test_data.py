"""Dataset registration, checks and the synthetic dataset."""
import json
import os

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

from detectron2.data import DatasetCatalog  # noqa: E402

from alignment_det.data import (  # noqa: E402
    check_datasets,
    get_dataset_dicts,
    SYNTHETIC_CLASSES,
    make_synthetic_coco,
    make_synthetic_voc,
    register_coco_json,
    register_voc,
)


def test_synthetic_dataset_is_deterministic_and_valid(tmp_path):
    a = make_synthetic_coco(str(tmp_path / "a"), num_images=6, seed=3)
    b = make_synthetic_coco(str(tmp_path / "b"), num_images=6, seed=3)
    c = make_synthetic_coco(str(tmp_path / "c"), num_images=6, seed=4)
    ja, jb, jc = (json.load(open(p)) for p in (a, b, c))
    assert ja == jb and ja != jc
    assert (tmp_path / "a" / "00001.png").read_bytes() == (tmp_path / "b" / "00001.png").read_bytes()
    sizes = {im["id"]: (im["width"], im["height"]) for im in ja["images"]}
    assert len(ja["annotations"]) >= 6
    for ann in ja["annotations"]:
        x, y, w, h = ann["bbox"]
        W, H = sizes[ann["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H


def test_builtin_synthetic_split_loads():
    dicts = get_dataset_dicts("synthetic_shapes_val", filter_empty=False)
    assert len(dicts) == 16 and all(d["annotations"] for d in dicts)


def test_unregistered_dataset_is_a_clear_error():
    with pytest.raises(KeyError, match="not registered.*register_coco_json"):
        check_datasets(["no_such_dataset"])


def test_missing_files_name_the_file(tmp_path):
    register_coco_json("ad_test_missing", str(tmp_path / "nope.json"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        get_dataset_dicts("ad_test_missing")


def test_registration_is_idempotent_and_conflicts_are_errors(tmp_path):
    json_file = make_synthetic_coco(str(tmp_path / "d"), num_images=2, seed=0)
    register_coco_json("ad_test_idem", json_file, str(tmp_path / "d"))
    register_coco_json("ad_test_idem", json_file, str(tmp_path / "d"))
    assert len(DatasetCatalog.get("ad_test_idem")) == 2
    with pytest.raises(ValueError, match="already registered"):
        register_coco_json("ad_test_idem", json_file, str(tmp_path / "other"))


def test_voc_registration_is_idempotent(tmp_path):
    register_voc("ad_test_voc", str(tmp_path), "train", class_names=["a", "b"])
    register_voc("ad_test_voc", str(tmp_path), "train", class_names=["a", "b"])
    with pytest.raises(ValueError, match="already registered"):
        register_voc("ad_test_voc", str(tmp_path / "x"), "train")
    with pytest.raises(FileNotFoundError):
        get_dataset_dicts("ad_test_voc")  # no ImageSets/Main/train.txt in the folder


def test_the_same_files_through_another_spelling_are_the_same_registration(tmp_path, monkeypatch):
    json_file = make_synthetic_coco(str(tmp_path / "d"), num_images=2, seed=0)
    register_coco_json("ad_test_paths", json_file, str(tmp_path / "d"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "d")
    for image_root in ("./d", "d/", str(tmp_path / "d") + "/", "link"):
        register_coco_json("ad_test_paths", os.path.join("d", "annotations.json"), image_root)
    with pytest.raises(ValueError, match="already registered with other settings.*image_root"):
        register_coco_json("ad_test_paths", json_file, "d/..")
    make_synthetic_voc(str(tmp_path / "voc"), {"train": 2})
    register_voc("ad_test_voc_paths", "voc", "train", class_names=SYNTHETIC_CLASSES)
    register_voc("ad_test_voc_paths", "./voc/", "train", class_names=list(SYNTHETIC_CLASSES))
    monkeypatch.chdir(tmp_path / "voc")  # a relative registration keeps meaning the same folder
    assert len(get_dataset_dicts("ad_test_voc_paths")) == 2


def test_voc_reregistration_with_other_classes_or_year_is_an_error(tmp_path):
    make_synthetic_voc(str(tmp_path / "voc"), {"train": 2})
    register_voc("ad_test_voc_classes", str(tmp_path / "voc"), "train", class_names=SYNTHETIC_CLASSES)
    with pytest.raises(ValueError, match=r"already registered with other settings \(thing_classes: \['rectangle', "
                                         r"'ellipse', 'triangle'\] -> \['ellipse', 'rectangle', 'triangle'\]\)"):
        register_voc("ad_test_voc_classes", str(tmp_path / "voc"), "train", class_names=sorted(SYNTHETIC_CLASSES))
    with pytest.raises(ValueError, match=r"\(year: 2007 -> 2012\)"):
        register_voc("ad_test_voc_classes", str(tmp_path / "voc"), "train", year=2012, class_names=SYNTHETIC_CLASSES)
    assert get_dataset_dicts("ad_test_voc_classes").thing_classes == list(SYNTHETIC_CLASSES)


def test_voc_objects_outside_class_names_are_named(tmp_path):
    make_synthetic_voc(str(tmp_path / "voc"), {"train": 2})
    register_voc("ad_test_voc_default_classes", str(tmp_path / "voc"), "train")  # the 20 VOC classes
    with pytest.raises(ValueError, match=r"objects \['ellipse', 'rectangle', 'triangle'\] that are not in "
                                         r"class_names \['aeroplane'.*Pass class_names="):
        get_dataset_dicts("ad_test_voc_default_classes")


def test_crowd_and_degenerate_boxes_are_dropped_by_the_loader(tmp_path):
    from detectron2.data import DatasetMapper
    from detectron2.data import transforms as T

    json_file = make_synthetic_coco(str(tmp_path / "e"), num_images=1, seed=0)
    data = json.load(open(json_file))
    img = data["images"][0]
    data["annotations"] += [
        dict(id=100, image_id=img["id"], category_id=1, bbox=[5, 5, 20, 20], area=400, iscrowd=1),
        dict(id=101, image_id=img["id"], category_id=1, bbox=[5, 5, 0, 10], area=0, iscrowd=0),
    ]
    json.dump(data, open(json_file, "w"))
    register_coco_json("ad_test_crowd", json_file, str(tmp_path / "e"))
    (d,) = get_dataset_dicts("ad_test_crowd")
    # The zero-width box is left out when the dataset is loaded (with a warning, see
    # test_box_report.py); the mapper drops the crowd box.
    assert len(d["annotations"]) == len(data["annotations"]) - 1
    assert all(a["bbox"][2] > 0 for a in d["annotations"])
    out = DatasetMapper(is_train=True, augmentations=[T.NoOpTransform()], image_format="BGR")(d)
    boxes = out["instances"].gt_boxes
    assert len(out["instances"]) == len(d["annotations"]) - 1 and boxes.nonempty().all()


def test_missing_crowdhuman_odgt_is_named_before_loading(tmp_path):
    from alignment_det.data import register_crowdhuman

    register_crowdhuman("ad_test_crowdhuman_missing", str(tmp_path / "annotation_train.odgt"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="annotation_train.odgt"):
        check_datasets(["ad_test_crowdhuman_missing"])
