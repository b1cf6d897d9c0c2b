"""The assignment() contract of every meta-architecture, and tools/visualize_assignment.py on the
synthetic set (tiny random models; nothing is trained)."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import os  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.structures import Boxes, pairwise_iou  # noqa: E402
from _inputs import gt_instances, random_batch, tiny_model  # noqa: E402
from _cli import REPO, instant_config  # noqa: E402

from alignment_det.assigners.atss import atss_assign  # noqa: E402
from alignment_det.assigners.fcos_targets import fcos_targets  # noqa: E402
from alignment_det.modeling.assignment import (  # noqa: E402
    gt_index_of_matched_boxes,
    label_anchors_assignment,
    level_ids_of,
    training_inputs,
)

sys.path.insert(0, os.path.join(REPO, "tools"))
import visualize_assignment  # noqa: E402



GTS = gt_instances([[10.0, 12, 60, 70], [50, 40, 150, 120], [100, 10, 130, 30]], [0, 2, 1])


def _model(name, *overrides):
    return tiny_model(name, *overrides).eval()


def test_helpers_by_hand():
    gt = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]])
    matched = torch.tensor([[5.0, 5, 20, 20], [0, 0, 10, 10], [1, 1, 2, 2]])
    assert gt_index_of_matched_boxes(matched, gt).tolist() == [1, 0, -1]
    assert gt_index_of_matched_boxes(matched, torch.zeros(0, 4)).tolist() == [-1, -1, -1]
    assert level_ids_of([2, 0, 3]).tolist() == [0, 0, 2, 2, 2]


def test_retinanet_group_is_detectron2_label_anchors():
    model = _model("retinanet_instant_test.py")
    batch = random_batch(GTS)
    a = label_anchors_assignment(model, batch)[0]
    group = a.groups["iou_matcher"]
    with torch.no_grad():
        feats = [model.backbone(model.preprocess_image(batch).tensor)[f] for f in model.head_in_features]
        anchors = Boxes.cat(model.anchor_generator(feats))
        matched_idx, labels = model.anchor_matcher(pairwise_iou(GTS.gt_boxes, anchors))
    pos = torch.nonzero(labels == 1).squeeze(1)
    assert group.prior_idx.tolist() == pos.tolist()
    assert group.gt_idx.tolist() == matched_idx[pos].tolist()
    torch.testing.assert_close(group.priors, anchors.tensor[pos])
    assert group.priors.shape[1] == 4 and a.level_names == ["p3", "p4", "p5", "p6", "p7"]
    assert set(group.gt_idx.tolist()) == {0, 1, 2}  # low-quality matches: every GT gets an anchor


def test_retinanet_conf_uses_retinanet_labels():
    conf = _model("retinanet_conf_instant_test.py").assignment(random_batch(GTS))[0].groups["iou_matcher"]
    base = label_anchors_assignment(_model("retinanet_instant_test.py"), random_batch(GTS))[0].groups["iou_matcher"]
    assert conf.prior_idx.tolist() == base.prior_idx.tolist() and conf.gt_idx.tolist() == base.gt_idx.tolist()


def test_mal_bag_and_selection_follow_the_schedule():
    model = _model("mal_instant_test.py")  # bag size 40, max_iter 100
    batch = random_batch(GTS)
    for t, m in ((0, 40), (60, 17), (99, 1)):  # m = floor(40 (1 - t/100)) + 1
        model.set_iter(t)
        a = model.assignment(batch)[0]
        bag, sel = a.groups["bag"], a.groups["selected"]
        assert a.info["num_selected"] == m and a.info["iteration"] == t
        assert torch.bincount(bag.gt_idx).tolist() == [40, 40, 40]
        assert torch.bincount(sel.gt_idx).tolist() == [m, m, m]
        for g in range(3):  # selected anchors lie in their GT's bag
            assert set(sel.prior_idx[sel.gt_idx == g].tolist()) <= set(bag.prior_idx[bag.gt_idx == g].tolist())
    # The bag of a GT is its 40 anchors of highest IoU.
    with torch.no_grad():
        feats = [model.backbone(model.preprocess_image(batch).tensor)[f] for f in model.head_in_features]
        anchors = Boxes.cat(model.anchor_generator(feats))
    top = pairwise_iou(GTS.gt_boxes, anchors).topk(40, dim=1).indices
    for g in range(3):
        assert set(bag.prior_idx[bag.gt_idx == g].tolist()) == set(top[g].tolist())


@pytest.mark.parametrize("variant", ["fcos", "retinanet"])
def test_date_o2o_and_o2m(variant):
    overrides = ["model.o2m=retinanet", "model.head.num_anchors=9"] if variant == "retinanet" else []
    model = _model("date_instant_test.py", *overrides)
    a = model.assignment(random_batch(GTS, gt_instances([], [])))
    o2o, o2m = a[0].groups["o2o"], a[0].groups["o2m"]
    assert sorted(o2o.gt_idx.tolist()) == [0, 1, 2] and len(set(o2o.prior_idx.tolist())) == 3
    assert o2o.priors.shape == (3, 2)  # o2o is on points
    if variant == "fcos":
        with torch.no_grad():
            feats = [model.backbone(model.preprocess_image(random_batch(GTS)).tensor)[f] for f in model.head_in_features]
            locations, _, levels = model.locations(feats)
        t = fcos_targets(locations, levels, GTS.gt_boxes.tensor, GTS.gt_classes, model.num_classes,
                         regress_ranges=model.o2m_regress_ranges)
        pos = torch.nonzero(t.gt_index >= 0).squeeze(1)
        assert o2m.prior_idx.tolist() == pos.tolist() and o2m.gt_idx.tolist() == t.gt_index[pos].tolist()
        assert o2m.priors.shape[1] == 2
    else:
        assert o2m.priors.shape[1] == 4 and set(o2m.gt_idx.tolist()) == {0, 1, 2}
    # The image without GT has empty groups.
    assert all(len(g.prior_idx) == 0 for g in a[1].groups.values())


def test_atss_and_eatss_groups():
    model = _model("hcral_atss_instant_test.py")  # EATSS l = 3, ranked by anchor IoU
    a = model.assignment(random_batch(GTS, gt_instances([], [])))
    atss, extra = a[0].groups["atss"], a[0].groups["eatss_extra"]
    with torch.no_grad():
        _, feats, gts = training_inputs(model, random_batch(GTS))
        anchors = model.anchor_generator(feats)
        sq = model.assignment_anchors(anchors)
        plain = atss_assign(sq, [len(x) for x in anchors], GTS.gt_boxes.tensor, topk=9).gt_index
        labels, _ = model.label_anchors(anchors, gts)
    # The atss group is the pure layer's ATSS, on the model's square anchors (the group's priors).
    pos = torch.nonzero(plain >= 0).squeeze(1)
    assert atss.prior_idx.tolist() == pos.tolist() and atss.gt_idx.tolist() == plain[pos].tolist()
    assert torch.equal(atss.priors, sq[pos])
    # EATSS adds at most l = 3 priors per GT, and training uses both groups.
    assert len(extra.prior_idx) > 0 and all(int((extra.gt_idx == g).sum()) <= 3 for g in range(3))
    trained = torch.nonzero(labels[0] != model.num_classes).squeeze(1).tolist()
    assert set(trained) == set(atss.prior_idx.tolist()) | set(extra.prior_idx.tolist())
    assert all(len(g.prior_idx) == 0 for g in a[1].groups.values())
    # Plain ATSS has no EATSS group.
    assert list(_model("atss_instant_test.py").assignment(random_batch(GTS))[0].groups) == ["atss"]


def test_assignment_without_instances_is_a_clear_error():
    with pytest.raises(ValueError, match="needs ground truth"):
        _model("date_instant_test.py").assignment([{"image": torch.zeros(3, 64, 64)}])


# ----------------------------------------------------------------------------- the tool
@pytest.mark.parametrize("name,groups", [
    ("mal_instant_test.py", "bag,selected"),
    ("date_instant_test.py", "o2o,o2m"),
    ("retinanet_conf_instant_test.py", "iou_matcher"),
    ("retinanet_instant_test.py", "iou_matcher"),
    ("fcos_instant_test.py", "fcos"),
    ("retinanet_alwa_instant_test.py", "iou_matcher"),
    ("hcral_atss_instant_test.py", "atss,eatss_extra"),
    ("hcral_retinanet_instant_test.py", "iou_matcher"),
])
def test_visualize_assignment_writes_a_png(name, groups, tmp_path, capsys):
    out = tmp_path / "a.png"
    extra = ["--iteration", "90"] if name.startswith("mal") else []
    assert visualize_assignment.main(["--config-file", instant_config(name), "--index", "3", *extra,
                                      "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for g in groups.split(","):
        assert f"  {g}: " in printed
    assert out.stat().st_size > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(str(out))
    assert img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 0.05  # not a blank canvas


def test_visualize_assignment_on_a_file_with_given_boxes(tmp_path, capsys):
    import cv2
    import numpy as np

    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.full((100, 140, 3), 128, np.uint8))
    out = tmp_path / "b.png"
    visualize_assignment.main(["--config-file", instant_config("retinanet_instant_test.py"), "--image", str(path),
                               "--gt", "10,10,60,70,0", "--gt", "70,20,130,90,2", "--layout", "overlay",
                               "--output", str(out)])
    assert "per GT [" in capsys.readouterr().out and out.is_file()
    with pytest.raises(ValueError, match="give its boxes with --gt"):
        visualize_assignment.main(["--config-file", instant_config("retinanet_instant_test.py"), "--image", str(path),
                                   "--output", str(out)])
    with pytest.raises(ValueError, match="x0,y0,x1,y1,class"):
        visualize_assignment.parse_gt(["1,2,3"])
    with pytest.raises(IndexError, match="has 16 images"):
        visualize_assignment.main(["--config-file", instant_config("fcos_instant_test.py"), "--index", "99",
                                   "--output", str(out)])
