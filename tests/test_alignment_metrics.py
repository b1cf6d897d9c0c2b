"""Alignment metrics (numpy/scipy) against values worked out by hand."""
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alignment_det.evaluation.alignment_metrics import (
    box_ioa,
    box_iou,
    calibration,
    evaluate_alignment,
    flat_metrics,
    match_detections,
    mean_by_bins,
    mean_by_rank_groups,
    nms_misranking,
    optimal_lrp,
    score_iou_correlations,
    score_iou_pairs,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_module_imports_without_torch_or_detectron2():
    """The metrics module and the evaluation package import where torch/detectron2/torchvision cannot."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('torch', 'torchvision', 'detectron2'):
                    raise ImportError('blocked: ' + name)
                return None
        sys.meta_path.insert(0, Block())
        import alignment_det.evaluation
        from alignment_det.evaluation.alignment_metrics import evaluate_alignment
        rep = evaluate_alignment([dict(det_boxes=[[0, 0, 10, 10]], det_scores=[0.9], det_classes=[0],
                                       gt_boxes=[[0, 0, 10, 10]], gt_classes=[0])])
        assert rep['lrp']['olrp'] == 0.0, rep['lrp']
        assert not any(m.split('.')[0] in ('torch', 'detectron2') for m in sys.modules)
        try:
            alignment_det.evaluation.AlignmentEvaluator
        except ImportError as e:
            assert 'blocked' in str(e), e
            print('lazy import failed as expected:', e)
        print('ok')
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr
    assert "lazy import failed as expected" in proc.stdout and proc.stdout.strip().endswith("ok")


# ----------------------------------------------------------------------------- geometry / matching
def test_box_iou_and_ioa_by_hand_and_against_torch():
    a = np.array([[0.0, 0, 10, 10]])
    b = np.array([[5.0, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    # overlap 5x5 = 25, union 100 + 100 - 25 = 175; a zero-area box gives 0, not NaN
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 1.0, 0.0, 0.0]])
    # IoA divides by the first (detection) box's area: 25 / 100
    np.testing.assert_allclose(box_ioa(a, b), [[0.25, 1.0, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)
    torch = pytest.importorskip("torch")
    from alignment_det.utils.boxes import pairwise_iou

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 30, (20, 2))], axis=1)
    t = torch.as_tensor(boxes)
    np.testing.assert_allclose(box_iou(boxes[:7], boxes), pairwise_iou(t[:7], t).numpy(), atol=1e-12)


def _match_image():
    gt_boxes = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 60, 20]]
    gt_classes = [0, 0, 0]
    gt_crowd = [False, False, True]
    det_boxes = [[0, 0, 10, 10], [0, 0, 10, 5], [20, 0, 30, 8], [40, 0, 50, 10], [21, 0, 31, 10]]
    det_scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    det_classes = [0, 0, 1, 0, 0]
    return det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_crowd


def test_match_detections_coco_greedy_by_hand():
    tp, iou, gt, ign = match_detections(*_match_image(), iou_thresh=0.5)
    # d0 = g0 exactly -> TP (IoU 1). d1 overlaps g0 with IoU 50/100 = 0.5 but g0 is taken -> FP.
    # d2 has class 1, g1 class 0 -> FP. d3 lies inside the crowd box (IoA 100/100 = 1) -> ignored.
    # d4 vs g1: intersection 9 x 10 = 90, union 100 + 100 - 90 = 110 -> TP at 90/110.
    assert tp.tolist() == [True, False, False, False, True]
    assert ign.tolist() == [False, False, False, True, False]
    assert gt.tolist() == [0, -1, -1, -1, 1]
    np.testing.assert_allclose(iou, [1.0, 0, 0, 0, 90 / 110])
    # At 0.85 the IoU-0.818 detection d4 is no longer a TP.
    tp85, *_ = match_detections(*_match_image(), iou_thresh=0.85)
    assert tp85.tolist() == [True, False, False, False, False]


def test_match_detections_higher_score_takes_the_gt_first():
    boxes, scores, classes, gt_boxes, gt_classes, crowd = _match_image()
    scores = [0.8, 0.9, 0.7, 0.6, 0.5]  # now the IoU-0.5 box d1 is scored above the perfect d0
    tp, iou, *_ = match_detections(boxes, scores, classes, gt_boxes, gt_classes, crowd, iou_thresh=0.5)
    assert tp.tolist() == [False, True, False, False, True]
    assert iou[1] == pytest.approx(0.5)


def test_match_detections_empty_inputs():
    tp, iou, gt, ign = match_detections(np.zeros((0, 4)), [], [], [[0, 0, 1, 1]], [0])
    assert tp.shape == iou.shape == gt.shape == ign.shape == (0,)
    tp, *_ = match_detections([[0, 0, 1, 1]], [0.3], [0], np.zeros((0, 4)), [])
    assert tp.tolist() == [False]


# ----------------------------------------------------------------------------- statistics
SCORES = [0.9, 0.5, 0.7, 0.5]
IOUS = [0.8, 0.6, 0.6, 0.3]


def test_correlations_by_hand():
    c = score_iou_correlations(SCORES, IOUS)
    # Pearson: means 0.65 and 0.575; deviations s = [.25, -.15, .05, -.15], u = [.225, .025, .025, -.275]
    # sum(ds du) = .05625 - .00375 + .00125 + .04125 = .095; sum ds^2 = .11; sum du^2 = .1275
    assert c["pearson"] == pytest.approx(0.095 / math.sqrt(0.11 * 0.1275))
    # Spearman: average ranks s -> [4, 1.5, 3, 1.5], u -> [4, 2.5, 2.5, 1]; deviations from 2.5:
    # [1.5, -1, .5, -1] and [1.5, 0, 0, -1.5]: 3.75 / sqrt(4.5 * 4.5) = 5/6
    assert c["spearman"] == pytest.approx(5 / 6)
    # Kendall tau-b: pairs (0,1) (0,2) (0,3) (2,3) concordant, (1,2) tied in IoU only, (1,3) tied in
    # score only: (4 - 0) / sqrt((4 + 1) (4 + 1)) = 0.8
    assert c["kendall"] == pytest.approx(0.8)
    assert c["n"] == 4


def test_correlations_undefined_are_nan():
    for s, u in (([0.5], [0.7]), ([], []), ([0.3, 0.3, 0.3], [0.1, 0.5, 0.9])):
        c = score_iou_correlations(s, u)
        assert math.isnan(c["pearson"]) and math.isnan(c["spearman"]) and math.isnan(c["kendall"])


def test_mean_by_rank_groups_by_hand():
    out = mean_by_rank_groups([0.1, 0.9, 0.5, 0.3, 0.7], [0.0, 1.0, 0.5, 0.2, 0.8], num_groups=2)
    # sorted by key: values 0, .2 | .5, .8, 1 (positions [0, 2) and [2, 5))
    assert out["count"] == [2, 3]
    assert out["mean"] == pytest.approx([0.1, 2.3 / 3])
    assert out["key_min"] == [0.1, 0.5] and out["key_max"] == [0.3, 0.9]
    deciles = mean_by_rank_groups(np.arange(5) / 10, np.arange(5), num_groups=10)
    assert sum(deciles["count"]) == 5 and math.isnan(deciles["mean"][0])  # group 0 = positions [0, 0)


def test_mean_by_bins_by_hand():
    out = mean_by_bins([0.05, 0.15, 0.95, 1.0, 0.55], [0.1, 0.2, 0.9, 0.7, 0.5])
    # IoU 1.0 falls in the last bin [.9, 1]; empty bins are NaN
    assert out["count"] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    m = out["mean"]
    assert m[0] == pytest.approx(0.1) and m[1] == pytest.approx(0.2) and m[5] == pytest.approx(0.5)
    assert m[9] == pytest.approx(0.8) and math.isnan(m[2])
    assert out["edges"][0] == 0 and out["edges"][-1] == 1 and len(out["edges"]) == 11


def test_calibration_by_hand():
    cal = calibration([0.95, 0.85, 0.82, 0.15, 0.05], [1, 1, 0, 0, 0])
    # bins: 9: {.95} acc 1 gap .05; 8: {.85, .82} conf .835 acc .5 gap .335; 1: {.15} gap .15; 0: {.05} gap .05
    # ECE = (.05 + 2 * .335 + .15 + .05) / 5 = .184; MCE = .335
    assert cal["ece"] == pytest.approx(0.184)
    assert cal["mce"] == pytest.approx(0.335)
    assert cal["count"][8] == 2 and cal["accuracy"][8] == 0.5 and cal["confidence"][8] == pytest.approx(0.835)
    assert math.isnan(calibration([], [])["ece"])


# ----------------------------------------------------------------------------- LRP
def test_optimal_lrp_worked_example():
    # One class, 3 GTs; detections by score: TP (IoU .9), FP, TP (IoU .6), FP. tau = .5, so a TP
    # costs (1 - IoU) / .5: .2 and .8.
    #   keep 0: LRP = 3 / 3 = 1
    #   keep 1: (.2 + 0 + 2) / (1 + 0 + 2) = 2.2 / 3 = .7333   <- minimum
    #   keep 2: (.2 + 1 + 2) / 4 = .8
    #   keep 3: (.2 + .8 + 1 + 1) / 4 = .75
    #   keep 4: (1 + 2 + 1) / 5 = .8
    res = optimal_lrp([0.9, 0.8, 0.7, 0.6], [True, False, True, False], [0.9, 0.0, 0.6, 0.0], 3)
    assert res["olrp"] == pytest.approx(2.2 / 3)
    assert res["threshold"] == 0.9
    assert res["loc"] == pytest.approx(0.1)  # mean (1 - IoU) of the one TP, not divided by 1 - tau
    assert res["fp"] == 0.0 and res["fn"] == pytest.approx(2 / 3)
    # The order of the inputs does not matter (sorted by score inside).
    again = optimal_lrp([0.6, 0.7, 0.8, 0.9], [False, True, False, True], [0.0, 0.6, 0.0, 0.9], 3)
    assert again == res


def test_optimal_lrp_tied_scores_are_not_split():
    # TP (IoU 1) and FP with the same score: keeping only the TP would give 0, but no threshold
    # separates them; keep both: (0 + 1 + 0) / (1 + 1 + 0) = .5.
    assert optimal_lrp([0.9, 0.9], [True, False], [1.0, 0.0], 1)["olrp"] == pytest.approx(0.5)
    assert optimal_lrp([0.9, 0.8], [True, False], [1.0, 0.0], 1)["olrp"] == 0.0


def test_optimal_lrp_edge_cases():
    assert optimal_lrp([0.5], [False], [0.0], 0) is None  # no GT: class left out
    none = optimal_lrp([], [], [], 2)  # GT but no detection: LRP 1, FN 1, Loc/FP undefined
    assert none["olrp"] == 1.0 and none["fn"] == 1.0 and math.isnan(none["loc"]) and math.isnan(none["threshold"])


def test_molrp_over_classes_by_hand():
    # class 0: the worked example above (3 GTs in three images); class 1: one GT, no detection;
    # class 2: detections, no GT -> left out.
    images = [
        dict(det_boxes=[[0, 0, 10, 10], [50, 50, 60, 60]], det_scores=[0.9, 0.8], det_classes=[0, 0],
             gt_boxes=[[0, 0, 10, 9], [100, 100, 110, 110]], gt_classes=[0, 1]),
        dict(det_boxes=[[0, 0, 10, 10], [70, 70, 80, 80], [30, 30, 40, 40]], det_scores=[0.7, 0.6, 0.95],
             det_classes=[0, 0, 2], gt_boxes=[[0, 0, 10, 6], [200, 200, 210, 210]], gt_classes=[0, 0]),
    ]
    rep = evaluate_alignment(images)
    lrp = rep["lrp"]
    # IoUs: [0,0,10,10] vs [0,0,10,9] = 90/100 = .9; vs [0,0,10,6] = 60/100 = .6
    c0, c1 = lrp["per_class"]["0"], lrp["per_class"]["1"]
    assert c0["olrp"] == pytest.approx(2.2 / 3) and c1["olrp"] == 1.0 and "2" not in lrp["per_class"]
    assert lrp["olrp"] == pytest.approx((2.2 / 3 + 1) / 2)
    assert lrp["olrp_loc"] == pytest.approx(0.1)  # class 1 has no TP: its Loc is left out
    assert lrp["olrp_fp"] == pytest.approx(0.0)
    assert lrp["olrp_fn"] == pytest.approx((2 / 3 + 1) / 2)


# ----------------------------------------------------------------------------- NMS misranking
def _nms_case():
    gt_boxes, gt_classes = [[0, 0, 10, 10], [0, 0, 10, 10]], [0, 1]
    cand = [[0, 0, 10, 12], [0, 0, 10, 10], [50, 50, 60, 60]]
    return cand, [0.9, 0.8, 0.7], [0, 0, 0], gt_boxes, gt_classes


def test_nms_misranking_by_hand():
    cand, scores, classes, gt_boxes, gt_classes = _nms_case()
    # GT 0 (class 0): candidate 1 is exact (IoU 1); candidate 0 has IoU 100/120. NMS kept 0 and 2,
    # suppressing 1 -> misranked, IoU lost 1 - 100/120. GT 1 (class 1) has no candidate of its class.
    res = nms_misranking(cand, scores, classes, [0, 2], gt_boxes, gt_classes)
    assert res["considered"].tolist() == [True, False]
    assert res["misranked"].tolist() == [True, False]
    assert res["iou_lost"][0] == pytest.approx(1 - 100 / 120)
    assert res["best_iou"].tolist() == [1.0, 0.0]
    # The best candidate kept: nothing lost. Everything kept (DATE, no NMS): zero by construction.
    for kept in ([1], [0, 1], np.ones(3, dtype=bool)):
        assert not nms_misranking(cand, scores, classes, kept, gt_boxes, gt_classes)["misranked"].any()
    # A GT whose best candidate is poor (< min_iou) is not counted.
    far = nms_misranking(cand, scores, classes, [0], [[30, 30, 40, 40]], [0], min_iou=0.5)
    assert not far["considered"].any()


def test_nms_misranking_bad_input():
    cand, scores, classes, gt_boxes, gt_classes = _nms_case()
    with pytest.raises(ValueError, match="same length"):
        nms_misranking(cand, scores[:2], classes, [0], gt_boxes, gt_classes)
    with pytest.raises(ValueError, match="one entry per candidate"):
        nms_misranking(cand, scores, classes, np.ones(2, dtype=bool), gt_boxes, gt_classes)


# ----------------------------------------------------------------------------- dataset level
def test_evaluate_alignment_populations_and_flat_names():
    images = [
        dict(image_id=1, det_boxes=[[0, 0, 10, 10], [0, 0, 10, 7], [50, 0, 60, 10]], det_scores=[0.9, 0.6, 0.3],
             det_classes=[0, 0, 0], gt_boxes=[[0, 0, 10, 10], [0, 0, 10, 7]], gt_classes=[0, 0],
             nms={"considered": [True, True], "misranked": [False, True], "iou_lost": [0.0, 0.25]}),
        dict(image_id=2, det_boxes=np.zeros((0, 4)), det_scores=[], det_classes=[],
             gt_boxes=[[5, 5, 20, 20], [0, 0, 100, 100]], gt_classes=[1, 1], gt_crowd=[False, True]),
    ]
    rep = evaluate_alignment(images)
    assert rep["num_detections"] == 3 and rep["num_gt"] == 3  # the crowd box is not a ground truth
    # best same-class IoU: 1, 1 (the [0,0,10,7] box equals GT 1), 0 -> "all" population (>= .1) = 2 dets
    assert rep["correlation"]["all"]["n"] == 2
    # TPs at .5: both top detections (each takes its exact GT), IoU 1 and 1 -> constant -> NaN
    assert rep["correlation"]["tp"]["n"] == 2 and math.isnan(rep["correlation"]["tp"]["spearman"])
    # calibration at .5: scores .9 (TP), .6 (TP), .3 (FP) -> bins 9, 6, 3: gaps .1, .4, .3 -> ECE .8 / 3
    assert rep["calibration"]["0.5"]["ece"] == pytest.approx(0.8 / 3)
    assert set(rep["calibration"]) == {"0.5", "0.75"}
    nms = rep["nms_misranking"]
    assert nms["share"] == 0.5 and nms["mean_iou_lost"] == 0.25 and nms["num_gt_considered"] == 2
    flat = flat_metrics(rep)
    for key in ("pearson_all", "spearman_all", "kendall_all", "spearman_tp50", "ece50", "mce75", "olrp",
                "olrp_loc", "olrp_fp", "olrp_fn", "nms_misranked_share", "nms_mean_iou_lost",
                "iou_by_score_decile-9", "score_by_iou_bin-0"):
        assert key in flat and isinstance(flat[key], float), key
    pairs = score_iou_pairs(images)
    np.testing.assert_allclose(pairs["ious"], [1.0, 1.0, 0.0])


def test_evaluate_alignment_without_detections_and_bad_input():
    rep = evaluate_alignment([dict(det_boxes=np.zeros((0, 4)), det_scores=[], det_classes=[],
                                   gt_boxes=[[0, 0, 5, 5]], gt_classes=[2])])
    assert rep["lrp"]["olrp"] == 1.0 and math.isnan(rep["calibration"]["0.5"]["ece"])
    assert "nms_misranking" not in rep
    with pytest.raises(ValueError, match="NaN"):
        evaluate_alignment([dict(det_boxes=[[0, 0, 1, 1]], det_scores=[float("nan")], det_classes=[0],
                                 gt_boxes=np.zeros((0, 4)), gt_classes=[])])
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_alignment([dict(det_boxes=[[0, 0, 1, 1]], det_scores=[0.5, 0.4], det_classes=[0])])


def test_hundreds_of_boxes_match_at_most_once():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 500, (300, 2))
    gt = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], axis=1)
    dets = np.concatenate([gt, gt + rng.normal(0, 2, gt.shape)])  # two candidates per GT
    tp, _, matched, _ = match_detections(dets, rng.random(600), np.zeros(600, int), gt, np.zeros(300, int))
    used = matched[tp]
    assert len(used) == len(set(used.tolist())) and tp.sum() >= 300 * 0.9
