"""AlignmentEvaluator and the NMS recorder inside Detectron2 (tiny random models, hand-made data)."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset  # noqa: E402
from detectron2.layers import batched_nms  # noqa: E402
from detectron2.modeling.meta_arch import retinanet as retinanet_module  # noqa: E402
from detectron2.structures import Boxes, BoxMode, Instances  # noqa: E402
from _cli import instant_config  # noqa: E402
from _inputs import model_of, tiny_config  # noqa: E402

from alignment_det.engine import Trainer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.evaluation import AlignmentEvaluator, NMSRecorder  # noqa: E402
from alignment_det.evaluation.nms_recorder import DEFAULT_NMS_CALL_SITES  # noqa: E402

FAKE = "alignment_eval_test_fake"


def _fake_dicts():
    return [
        dict(file_name="a.png", image_id=1, height=100, width=200,
             annotations=[dict(bbox=[0, 0, 40, 40], bbox_mode=BoxMode.XYXY_ABS, category_id=0, iscrowd=0)]),
        dict(file_name="b.png", image_id=2, height=100, width=200,
             annotations=[dict(bbox=[100, 0, 150, 50], bbox_mode=BoxMode.XYXY_ABS, category_id=1, iscrowd=0),
                          dict(bbox=[0, 0, 200, 100], bbox_mode=BoxMode.XYXY_ABS, category_id=1, iscrowd=1)]),
    ]


if FAKE not in DatasetCatalog.list():
    DatasetCatalog.register(FAKE, _fake_dicts)


def _fake_detector(inputs):
    """A detector whose final NMS goes through RetinaNet's module, on hand-made candidates.

    Model input = half the output size. Image 1: candidate 0 [0,0,20,24] (score .9) and candidate 1
    [0,0,20,20] (.8, exact once scaled x2); their IoU is 400/480 > .5, so NMS keeps 0 only.
    Image 2: one candidate, exact, kept.
    """
    outs = []
    for inp in inputs:
        if inp["image_id"] == 1:
            boxes = torch.tensor([[0.0, 0, 20, 24], [0, 0, 20, 20]])
            scores, classes = torch.tensor([0.9, 0.8]), torch.tensor([0, 0])
        else:
            boxes, scores, classes = torch.tensor([[50.0, 0, 75, 25]]), torch.tensor([0.7]), torch.tensor([1])
        keep = retinanet_module.batched_nms(boxes, scores, classes, 0.5)
        out = Instances((inp["height"], inp["width"]))
        out.pred_boxes = Boxes(boxes[keep] * 2)
        out.scores, out.pred_classes = scores[keep], classes[keep]
        outs.append({"instances": out})
    return outs


def _fake_loader():
    return [[{"image_id": d["image_id"], "height": 100, "width": 200, "image": torch.zeros(3, 50, 100)}]
            for d in _fake_dicts()]


def test_evaluator_end_to_end_on_hand_made_detections(tmp_path):
    ev = AlignmentEvaluator(FAKE, output_dir=str(tmp_path), distributed=False)
    original = retinanet_module.batched_nms
    res = inference_on_dataset(_fake_detector, _fake_loader(), ev)["alignment"]
    assert retinanet_module.batched_nms is original  # restored after evaluate()
    # Image 1: the exact candidate (IoU 1) was suppressed by [0,0,40,48] (IoU 1600/1920): misranked.
    # Image 2: its only candidate is exact and kept. The crowd box is no ground truth.
    assert res["nms_misranked_share"] == pytest.approx(0.5)
    assert res["nms_mean_iou_lost"] == pytest.approx(1 - 1600 / 1920)
    assert res["nms_num_gt_considered"] == 2 and res["num_gt"] == 2 and res["num_detections"] == 2
    # Both detections are TPs at .5 and .75 with scores .9 and .7: bins 9 and 7, gaps .1 and .3 -> ECE .2
    assert res["ece50"] == pytest.approx(0.2) and res["ece75"] == pytest.approx(0.2)
    # oLRP: class 0 TP at IoU 1600/1920 -> Loc 1 - .8333; class 1 TP at IoU 1 -> 0; no FP, no FN.
    assert res["olrp_fp"] == 0 and res["olrp_fn"] == 0
    assert res["olrp_loc"] == pytest.approx((1 - 1600 / 1920) / 2)
    report = (tmp_path / "alignment_metrics.json").read_text()
    assert '"per_class"' in report and '"num_images_with_nms": 2' in report


def test_candidates_are_scaled_to_the_output_resolution_and_clipped():
    from alignment_det.evaluation.nms_recorder import NMSCall

    call = NMSCall(torch.tensor([[10.0, 5, 120, 40]]), torch.tensor([0.5]), torch.tensor([2]), torch.tensor([0]), 0.5)
    inp = {"image": torch.zeros(3, 50, 100), "height": 100, "width": 200}
    boxes, scores, classes, kept = AlignmentEvaluator._candidates(inp, call)
    # x2 in both directions, then x clipped to the 200-px width: [20, 10, 240 -> 200, 80]
    np.testing.assert_allclose(boxes, [[20.0, 10, 200, 80]])
    assert classes.tolist() == [2] and kept.tolist() == [0]


def _tiny_model(name, *overrides):
    cfg = tiny_config(name, "model.test_score_thresh=0.0", *overrides)
    return cfg, model_of(cfg).eval()


def test_recorder_sees_one_final_nms_per_image_and_restores():
    _, model = _tiny_model("retinanet_instant_test.py")
    images = [{"image": torch.rand(3, 64, 96) * 255, "height": 64, "width": 96} for _ in range(2)]
    originals = {m: sys.modules[m].batched_nms for m in DEFAULT_NMS_CALL_SITES if m in sys.modules}
    with NMSRecorder() as rec, torch.no_grad():
        out = model(images)
        calls = rec.pop()
    assert len(calls) == 2
    for call, o in zip(calls, out):
        assert call.boxes.shape[0] == call.scores.shape[0] == call.classes.shape[0] > 0
        # The detections are the first 100 kept candidates, minus those empty once clipped to the
        # image (detector_postprocess drops them); the input size is the output size here.
        kept = call.kept[:100]
        boxes = Boxes(call.boxes[kept].clone())
        boxes.clip((64, 96))
        torch.testing.assert_close(call.scores[kept][boxes.nonempty()], o["instances"].scores)
    for m, f in originals.items():
        assert sys.modules[m].batched_nms is f
    assert batched_nms is sys.modules["detectron2.layers"].batched_nms


def test_recorder_sees_date_only_when_it_is_evaluated_with_nms():
    images = [{"image": torch.rand(3, 64, 96) * 255, "height": 64, "width": 96} for _ in range(2)]
    for overrides, calls in (((), 0), (("model.test_nms_thresh=0.6",), 2)):
        _, model = _tiny_model("date_instant_test.py", *overrides)
        with NMSRecorder() as rec, torch.no_grad():
            model(images)
            assert len(rec.pop()) == calls, overrides


def test_recorder_rejects_a_module_without_batched_nms():
    with pytest.raises(AttributeError, match="no 'batched_nms'"):
        NMSRecorder(["json"]).start()


def _evaluate(cfg, model, evaluator):
    loader = Trainer.build_test_loader(cfg)
    return inference_on_dataset(model, loader, evaluator)


@pytest.mark.parametrize("name", ["date_instant_test.py", "mal_instant_test.py", "retinanet_conf_instant_test.py"])
def test_project_models_on_the_synthetic_set(name):
    cfg, model = _tiny_model(name)
    # nms_min_iou=0: every GT with a same-class candidate counts, so random weights give figures.
    ev = AlignmentEvaluator(cfg.dataloader.test.dataset.names, distributed=False, nms_min_iou=0.0)
    res = _evaluate(cfg, model, ev)["alignment"]
    assert res["num_detections"] > 0 and res["num_gt"] == 34  # the 16 synthetic val images
    assert 0 <= res["olrp"] <= 1 and res["nms_num_gt_considered"] > 0
    for key in ("spearman_all", "pearson_tp50"):  # NaN when a random model localises nothing
        assert math.isnan(res[key]) or -1 <= res[key] <= 1
    if name.startswith("date"):
        # No NMS: the detections are their own candidates, so nothing can be misranked.
        assert res["nms_misranked_share"] == 0 and res["nms_mean_iou_lost"] == 0
        assert ev.report["nms_misranking"]["num_images_with_nms"] == 0
    else:
        assert ev.report["nms_misranking"]["num_images_with_nms"] == 16
        assert 0 <= res["nms_misranked_share"] <= 1


def test_faster_rcnn_second_stage_nms_is_recorded_not_the_rpn():
    """A tiny random Faster R-CNN: one recorded NMS per image (the box head's), none from the RPN."""
    rcnn = load_config(instant_config("faster_rcnn_instant_test.py"), [])
    torch.manual_seed(0)
    model = instantiate(rcnn.model).eval()
    ev = AlignmentEvaluator(rcnn.dataloader.test.dataset.names, distributed=False, nms_min_iou=0.0)
    res = _evaluate(rcnn, model, ev)["alignment"]
    assert ev.report["nms_misranking"]["num_images_with_nms"] == 16 and ev._nms_mismatch_batches == 0
    assert res["num_detections"] > 0 and 0 <= res["nms_misranked_share"] <= 1


def test_a_list_of_evaluators_runs_as_detectron2_evaluators(tmp_path):
    cfg = load_config(instant_config("retinanet_instant_test.py"), [f"train.output_dir={tmp_path}"])
    from detectron2.config import LazyCall as L
    from detectron2.evaluation import COCOEvaluator

    cfg.dataloader.evaluator = [
        L(COCOEvaluator)(dataset_name="${dataloader.test.dataset.names}", output_dir="${train.output_dir}"),
        L(AlignmentEvaluator)(dataset_name="${dataloader.test.dataset.names}", output_dir="${train.output_dir}"),
    ]
    ev = Trainer.build_evaluator(cfg)
    assert isinstance(ev, DatasetEvaluators)
    assert [type(e).__name__ for e in ev._evaluators] == ["COCOEvaluator", "AlignmentEvaluator"]


def test_unknown_dataset_and_missing_hotcoco_are_clear_errors(monkeypatch):
    with pytest.raises(KeyError, match="not registered"):
        AlignmentEvaluator("no_such_dataset")
    monkeypatch.setitem(sys.modules, "hotcoco", None)  # import hotcoco -> ImportError
    with pytest.raises(ImportError, match=r"alignment_det\[analysis\]"):
        AlignmentEvaluator(FAKE, tide=True)


def test_tide_attributes_errors_to_the_right_type():
    pytest.importorskip("hotcoco")
    from alignment_det.evaluation.tide import tide_errors

    gt = dict(gt_boxes=[[0, 0, 40, 40]], gt_classes=[0], height=100, width=100)
    # A box at IoU 400/2800 ~ .14 (between TIDE's background .1 and foreground .5 thresholds), right
    # class: a localisation error; fixing it makes AP50 100, so Loc costs all 100 points.
    loc = tide_errors([dict(gt, image_id=i, det_boxes=[[0, 0, 40, 10]], det_scores=[0.9], det_classes=[0])
                       for i in (1, 2)])
    assert loc["dAP_loc"] == pytest.approx(100.0) and loc["dAP_cls"] == 0 and loc["ap50"] == 0
    # The exact box with the wrong class: a classification error.
    cls = tide_errors([dict(gt, image_id=i, det_boxes=[[0, 0, 40, 40]], det_scores=[0.9], det_classes=[1])
                       for i in (1, 2)])
    assert cls["dAP_cls"] == pytest.approx(100.0) and cls["dAP_loc"] == 0
    assert math.isnan(tide_errors([dict(gt, image_id=1, det_boxes=np.zeros((0, 4)), det_scores=[],
                                        det_classes=[])])["dAP_loc"])


def test_tide_takes_string_image_ids():
    """A VOC dataset's image ids are its file stems ("cat_01", "000005"); hotcoco wants integers.
    The same records under string ids give the same breakdown as under integer ids, and ids that
    only look alike as numbers ("5", "005") stay two images."""
    pytest.importorskip("hotcoco")
    from alignment_det.evaluation.tide import tide_errors

    gt = dict(gt_boxes=[[0, 0, 40, 40]], gt_classes=[0], height=100, width=100)
    dets = [dict(det_boxes=[[0, 0, 40, 10]], det_scores=[0.9], det_classes=[0]),
            dict(det_boxes=[[0, 0, 40, 40]], det_scores=[0.8], det_classes=[0])]
    by_int = tide_errors([dict(gt, image_id=i, **d) for i, d in enumerate(dets, 1)])
    by_str = tide_errors([dict(gt, image_id=i, **d) for i, d in zip(("cat_01", "dog_01"), dets)])
    assert by_str == pytest.approx(by_int) and by_str["dAP_loc"] > 0
    assert tide_errors([dict(gt, image_id=i, **d) for i, d in zip(("5", "005"), dets)]) == pytest.approx(by_int)
