"""align/score_iou_corr: the helper by hand, and each method's logged value against an independent
computation of its definition (tiny random models, one training forward, CPU)."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.structures import Boxes, pairwise_iou  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from scipy import stats  # noqa: E402
from _inputs import gt_instances, random_batch, tiny_model  # noqa: E402

from alignment_det.layers.score_fusion import fuse_scores  # noqa: E402
from alignment_det.modeling.alignment_logging import SCORE_IOU_CORR_KEY, log_score_iou_correlation  # noqa: E402
from alignment_det.modeling.assignment import training_inputs  # noqa: E402



TWO = ([[10.0, 12, 60, 70], [50, 40, 150, 120]], [0, 2])
ONE = ([[30.0, 30, 90, 100]], [1])


def _logged(model, batch, iteration=0):
    model.train()
    with EventStorage(iteration) as storage:
        model(batch)
        latest = storage.latest()
    return latest[SCORE_IOU_CORR_KEY][0] if SCORE_IOU_CORR_KEY in latest else None


def test_helper_logs_spearman_by_hand():
    with EventStorage(0) as storage:
        # average ranks [4, 1.5, 3, 1.5] and [4, 2.5, 2.5, 1] -> 3.75 / 4.5 = 5/6
        value = log_score_iou_correlation(torch.tensor([0.9, 0.5, 0.7, 0.5]), torch.tensor([0.8, 0.6, 0.6, 0.3]))
        assert value == pytest.approx(5 / 6)
        assert storage.latest()[SCORE_IOU_CORR_KEY][0] == pytest.approx(5 / 6)
    with EventStorage(0) as storage:
        assert log_score_iou_correlation(torch.tensor([0.9]), torch.tensor([0.8])) is None  # one positive
        assert log_score_iou_correlation(torch.tensor([0.2, float("nan")]), torch.tensor([0.1, 0.5])) is None
        assert SCORE_IOU_CORR_KEY not in storage.latest()
    # Outside a trainer nothing is logged, nothing fails.
    assert log_score_iou_correlation(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == pytest.approx(1.0)


def _spearman(scores, ious):
    return stats.spearmanr(torch.cat(scores).numpy(), torch.cat(ious).numpy())[0]


def test_retinanet_conf_logs_fused_score_against_decoded_iou():
    model = tiny_model("retinanet_conf_instant_test.py")
    batch = random_batch(gt_instances(*TWO), gt_instances(*ONE))
    logged = _logged(model, batch)
    # Independently: RetinaNet's labels, the head's outputs, Detectron2's decoding.
    with torch.no_grad():
        images = model.preprocess_image(batch)
        feats = [model.backbone(images.tensor)[f] for f in model.head_in_features]
        logits, deltas, obj = model._transpose_dense_predictions(model.head(feats), [model.num_classes, 4, 1])
        anchors = model.anchor_generator(feats)
        labels, matched = model.label_anchors(anchors, [b["instances"] for b in batch])
        all_anchors = Boxes.cat(anchors).tensor
        scores, ious = [], []
        for i in range(2):
            pos = torch.nonzero((labels[i] >= 0) & (labels[i] < model.num_classes)).squeeze(1)
            s_cls = torch.cat(logits, 1)[i, pos, labels[i][pos]].sigmoid()
            s_obj = torch.cat(obj, 1)[i, pos, 0].sigmoid()
            scores.append(fuse_scores(s_cls[:, None], s_obj[:, None], model.fusion_alpha)[:, 0])
            boxes = model.box2box_transform.apply_deltas(torch.cat(deltas, 1)[i, pos], all_anchors[pos])
            ious.append(pairwise_iou(Boxes(boxes), Boxes(matched[i][pos])).diagonal())
    assert logged == pytest.approx(_spearman(scores, ious), abs=1e-6)


def test_mal_logs_selected_bag_anchors():
    model = tiny_model("mal_instant_test.py")
    batch = random_batch(gt_instances(*TWO), gt_instances(*ONE))
    t = 60  # lambda = .6: m = floor(40 * .4) + 1 = 17 anchors per bag
    logged = _logged(model, batch, iteration=t)
    model.set_iter(t)
    with torch.no_grad():
        assignment = model.assignment(batch)  # the same depressed features and selection as the loss
        images, feats, preds, _, _, _ = model._training_predictions(batch)
        logits, deltas = model._transpose_dense_predictions(preds, [model.num_classes, 4])
        all_anchors = Boxes.cat(model.anchor_generator(feats)).tensor
        scores, ious = [], []
        for i, a in enumerate(assignment):
            sel = a.groups["selected"]
            assert len(sel.prior_idx) == 17 * len(a.gt_boxes)
            gt_cls = a.gt_classes[sel.gt_idx]
            scores.append(torch.cat(logits, 1)[i, sel.prior_idx, gt_cls].sigmoid())
            boxes = model.box2box_transform.apply_deltas(torch.cat(deltas, 1)[i, sel.prior_idx], all_anchors[sel.prior_idx])
            ious.append(pairwise_iou(Boxes(boxes), Boxes(a.gt_boxes[sel.gt_idx])).diagonal())
    assert logged == pytest.approx(_spearman(scores, ious), abs=1e-5)


def test_date_logs_o2o_pairs_and_nothing_for_a_single_pair():
    model = tiny_model("date_instant_test.py")
    # One GT in the whole batch -> one matched pair -> no correlation, nothing logged.
    assert _logged(model, random_batch(gt_instances(*ONE), gt_instances([], []))) is None
    batch = random_batch(gt_instances(*TWO), gt_instances(*ONE))
    logged = _logged(model, batch)
    with torch.no_grad():
        assignment = model.assignment(batch)
        _, feats, _ = training_inputs(model, batch)
        locations, strides, _ = model.locations(feats)
        _, probs, boxes = model._o2o_dense(model.head(feats), strides, locations)
        scores, ious = [], []
        for i, a in enumerate(assignment):
            o2o = a.groups["o2o"]
            assert sorted(o2o.gt_idx.tolist()) == list(range(len(a.gt_boxes)))  # one location per GT
            scores.append(probs[i, o2o.prior_idx, a.gt_classes[o2o.gt_idx]])
            ious.append(pairwise_iou(Boxes(boxes[i, o2o.prior_idx]), Boxes(a.gt_boxes[o2o.gt_idx])).diagonal())
    assert logged == pytest.approx(_spearman(scores, ious), abs=1e-6)


@pytest.mark.parametrize("name", ["atss_instant_test.py", "hcral_atss_instant_test.py"])
def test_atss_family_logs_quality_weighted_score_against_decoded_iou(name):
    model = tiny_model(name)
    batch = random_batch(gt_instances(*TWO), gt_instances(*ONE))
    logged = _logged(model, batch)
    with torch.no_grad():
        _, feats, gts = training_inputs(model, batch)
        pred = model.dense_predictions(model.head(feats))
        anchors = model.anchor_generator(feats)
        pred_boxes = model.decode(anchors, pred["deltas"])
        labels, matched = model.label_anchors(anchors, gts, pred_boxes)
        scores, ious = [], []
        for i in range(2):
            pos = torch.nonzero(labels[i] != model.num_classes).squeeze(1)
            # ATSS's inference score: σ(cls) · σ(quality)
            scores.append(pred["logits"][i, pos, labels[i][pos]].sigmoid() * pred["quality"][i, pos].sigmoid())
            ious.append(pairwise_iou(Boxes(pred_boxes[i, pos]), Boxes(matched[i][pos])).diagonal())
    assert logged == pytest.approx(_spearman(scores, ious), abs=1e-5)


def test_hcral_retinanet_logs_class_score_against_decoded_iou():
    model = tiny_model("hcral_retinanet_instant_test.py")
    batch = random_batch(gt_instances(*TWO), gt_instances(*ONE))
    logged = _logged(model, batch)
    with torch.no_grad():
        _, feats, gts = training_inputs(model, batch)
        logits, deltas = model._transpose_dense_predictions(model.head(feats), [model.num_classes, 4])
        anchors = model.anchor_generator(feats)
        labels, matched = model.label_anchors(anchors, gts)
        all_anchors = Boxes.cat(anchors).tensor
        scores, ious = [], []
        for i in range(2):
            pos = torch.nonzero((labels[i] >= 0) & (labels[i] < model.num_classes)).squeeze(1)
            scores.append(torch.cat(logits, 1)[i, pos, labels[i][pos]].sigmoid())
            boxes = model.box2box_transform.apply_deltas(torch.cat(deltas, 1)[i, pos], all_anchors[pos])
            ious.append(pairwise_iou(Boxes(boxes), Boxes(matched[i][pos])).diagonal())
    assert logged == pytest.approx(_spearman(scores, ious), abs=1e-5)


def test_baselines_log_nothing():
    # Detectron2's own RetinaNet (here with ALWA) is not a project method and logs no signal.
    assert _logged(tiny_model("retinanet_alwa_instant_test.py"), random_batch(gt_instances(*TWO), gt_instances(*ONE))) is None
