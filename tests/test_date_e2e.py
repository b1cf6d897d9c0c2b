"""DATE end to end on Detectron2: training losses, NMS-free o2o-only inference, export, configs,
CrowdHuman odgt loading, instant-test training + --eval-only through train_net.py."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from unittest import mock  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from detectron2.modeling.meta_arch.retinanet import permute_to_N_HWA_K  # noqa: E402

from _inputs import tiny_model  # noqa: E402

from alignment_det.assigners.fcos_targets import fcos_targets  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.meta_arch.date import DATE  # noqa: E402
from alignment_det.utils.lr_factor import backbone_lr_factor  # noqa: E402
from alignment_det.modeling.meta_arch.date_export import export_program, export_torchscript  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANT = os.path.join(ROOT, "configs", "quick_schedules", "date_instant_test.py")
DATE_CONFIGS = [
    "configs/date_F_R50_1x.py",
    "configs/date_F_R50_3x.py",
    "configs/date_R_R50_1x.py",
    "configs/date_F_R101_3x.py",
    "configs/date_F_3dmf_R50_1x.py",
    "configs/date_F_3dmf_R50_3x.py",
    "configs/quick_schedules/date_instant_test.py",
    "projects/DATE/configs/date_F_R50_crowdhuman.py",
]
VARIANTS = {
    "DATE-F": [],
    "DATE-R": ["model.o2m=retinanet"],
    "3DMF": ["model.head.use_3dmf=True"],
    "separate-subnets": ["model.head.share_subnets=False"],
    # the one-to-many controls that move DATE-F's FCOS branch towards Detectron2's FCOS, all on
    "o2m-fcos-switches": ["model.o2m_center_sampling_radius=1.5", "model.o2m_box_loss=giou",
                          "model.head.o2m_norm_on_bbox=True", "model.head.o2m_centerness_on_reg=True"],
}
H, W = 128, 128  # multiple of the FPN's size_divisibility (128)


def build(overrides=(), seed=0) -> DATE:
    return tiny_model(INSTANT, *overrides, seed=seed)


def image(seed=0, h=H, w=W):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g).float()


def instances(boxes, classes=None, h=H, w=W):
    inst = Instances((h, w))
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.gt_boxes = Boxes(b)
    inst.gt_classes = torch.as_tensor(classes if classes is not None else [0] * len(b), dtype=torch.long)
    return inst


def crowded(n=300, seed=0):
    """``n`` random boxes incl. a 0.5-px box, a degenerate box near the border and duplicates."""
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * 60 + 2
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([W, H]) - wh)
    b = torch.cat([xy, xy + wh], 1)
    b[0] = torch.tensor([10.0, 10.0, 10.5, 10.5])
    b[1] = torch.tensor([0.0, 0.0, 0.8, 127.0])
    b[2] = b[3]
    return instances(b, torch.randint(0, 3, (n,), generator=g))


def batch(insts, seed=0):
    return [{"image": image(seed + i), "instances": inst} for i, inst in enumerate(insts)]


def infer_inputs(n=2, seed=0):
    return [{"image": image(seed + i)} for i in range(n)]


# ------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_training_losses_finite_with_empty_half_empty_and_crowded_gt(variant):
    model = build(VARIANTS[variant])
    model.train()
    box_term = "loss_o2m_giou" if "model.o2m_box_loss=giou" in VARIANTS[variant] else "loss_o2m_iou"
    expected_o2m = (
        {"loss_o2m_cls", "loss_o2m_box_reg"} if variant == "DATE-R" else {"loss_o2m_cls", box_term, "loss_o2m_ctr"}
    )
    for insts in (
        [instances([]), instances([])],  # whole batch empty
        [instances([[20, 20, 90, 100], [30, 5, 60, 40]], [1, 2]), instances([])],  # half empty
        [crowded(300)],
    ):
        with EventStorage(0) as storage:
            losses = model(batch(insts))
            assert set(losses) == {"loss_o2o_cls", "loss_o2o_l1", "loss_o2o_giou"} | expected_o2m
            for k, v in losses.items():
                assert torch.isfinite(v), (variant, k, v)
            model.zero_grad()
            sum(losses.values()).backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)
            # the o2m predictor is trained (classification covers all locations even without GT)
            assert model.head.o2m_cls_score.weight.grad.abs().sum() > 0
            hist = storage.histories()
            for key in ("date/num_o2o_matched", "date/num_o2m_pos", "date/loss_o2o", "date/loss_o2m"):
                assert key in hist
            n_gt = sum(len(i) for i in insts) / len(insts)
            assert hist["date/num_o2o_matched"].latest() <= n_gt
            if n_gt == 0:
                assert hist["date/num_o2o_matched"].latest() == 0
                assert losses["loss_o2o_l1"] == 0 and losses["loss_o2o_giou"] == 0


def test_every_gt_gets_one_distinct_location_and_lambdas_scale_losses():
    model = build()
    model.train()
    insts = [instances([[20, 20, 90, 100], [30, 5, 60, 40], [30, 5, 60, 40], [100, 100, 100.5, 100.5]], [0, 1, 1, 2])]
    b = batch(insts)
    with EventStorage(0) as storage:
        losses = model(b)
        assert storage.histories()["date/num_o2o_matched"].latest() == 4  # duplicates and a tiny box too
    model.lambda_o2o, model.lambda_o2m = 2.0, 0.5
    with EventStorage(0):
        scaled = model(b)
    for k in losses:
        factor = 2.0 if k.startswith("loss_o2o") else 0.5
        torch.testing.assert_close(scaled[k], losses[k] * factor)


def test_o2m_centre_sampling_option_passes_each_locations_stride():
    box = [[8.0, 8, 120, 120]]  # large: without centre sampling most positives lie near its border
    plain, sampled = build(), build(["model.o2m_center_sampling_radius=1.5"])
    feats = [torch.zeros(1, 1, H // s, W // s) for s in plain.strides]
    locations, loc_strides, level_ids = plain.locations(feats)
    gt_boxes, gt_classes = [instances(box).gt_boxes.tensor], [torch.tensor([1])]
    off = plain._fcos_o2m_labels(locations, loc_strides, level_ids, gt_boxes, gt_classes)[0]
    on = sampled._fcos_o2m_labels(locations, loc_strides, level_ids, gt_boxes, gt_classes)[0]
    ref = fcos_targets(locations, level_ids, gt_boxes[0], gt_classes[0], plain.num_classes,
                       center_sampling_radius=1.5, strides=loc_strides)
    assert torch.equal(on.gt_index, ref.gt_index) and torch.equal(on.ltrb, ref.ltrb)
    n_on, n_off = int((on.gt_index >= 0).sum()), int((off.gt_index >= 0).sum())
    assert 0 < n_on < n_off
    sampled.train()
    with EventStorage(0) as storage:  # trains with it, on a crowded image too
        losses = sampled(batch([instances(box, [1]), crowded(100)]))
        assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_o2m_iou"] > 0
        assert storage.histories()["date/num_o2m_pos"].latest() > 0
    with pytest.raises(ValueError, match="o2m_center_sampling_radius applies to the FCOS"):
        build(["model.o2m=retinanet", "model.head.o2m=retinanet", "model.o2m_center_sampling_radius=1.5"])


def test_o2m_giou_option_changes_only_the_box_term():
    plain, giou = build(), build(["model.o2m_box_loss=giou"])
    giou.load_state_dict(plain.state_dict())
    plain.train(), giou.train()
    b = batch([instances([[8.0, 8, 120, 120], [30, 5, 60, 40]], [1, 0])])
    with EventStorage(0):
        a, g = plain(b), giou(b)
    assert "loss_o2m_iou" in a and "loss_o2m_giou" not in a
    assert "loss_o2m_giou" in g and "loss_o2m_iou" not in g and g["loss_o2m_giou"] > 0
    for k in a.keys() - {"loss_o2m_iou"}:  # same weights, same batch: every other loss is equal
        torch.testing.assert_close(g[k], a[k])
    with pytest.raises(ValueError, match="o2m_box_loss must be one of"):
        build(["model.o2m_box_loss=smooth_l1"])
    with pytest.raises(ValueError, match="o2m_box_loss applies to the FCOS"):
        build(["model.o2m=retinanet", "model.head.o2m=retinanet", "model.o2m_box_loss=giou"])


def test_o2m_norm_on_bbox_and_centerness_on_reg_switches():
    """mmdet FCOSHead's two switches on the FCOS o2m predictor: ltrb = relu(scale_l · x) in strides,
    which the meta-arch turns into pixels with each level's stride; centerness from the reg tower."""
    plain = build()
    switched = build(["model.head.o2m_norm_on_bbox=True", "model.head.o2m_centerness_on_reg=True"])
    head = switched.head
    with torch.no_grad():
        head.scales.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5]))
        torch.nn.init.normal_(head.o2m_bbox_pred.bias)  # some raw outputs negative, some positive
    plain.load_state_dict(switched.state_dict())  # the switches add no parameter: same weights
    feats = [torch.randn(2, head.cls_score.in_channels, H // s, W // s) for s in switched.strides]
    with torch.no_grad():
        cls_feats, reg_feats = head.forward_towers(feats)
        out = head.forward_o2m(feats, cls_feats, reg_feats)
        pixels = switched._fcos_o2m_ltrb_pixels(out["o2m_reg"])
        ref_plain = plain.head.forward_o2m(feats, *plain.head.forward_towers(feats))
    for lvl, (x, s) in enumerate(zip(reg_feats, switched.strides)):
        raw = head.o2m_bbox_pred(x) * head.scales[lvl]
        assert (raw < 0).any() and (raw > 0).any()
        torch.testing.assert_close(out["o2m_reg"][lvl], raw.clamp(min=0))
        torch.testing.assert_close(pixels[lvl], permute_to_N_HWA_K(raw.clamp(min=0), 4) * s)
        torch.testing.assert_close(out["o2m_ctr"][lvl], head.o2m_ctrness(x))  # the reg tower's features
        torch.testing.assert_close(ref_plain["o2m_reg"][lvl], raw.exp())  # DATE: exp, in pixels
        torch.testing.assert_close(ref_plain["o2m_ctr"][lvl], head.o2m_ctrness(cls_feats[lvl]))
    torch.testing.assert_close(plain._fcos_o2m_ltrb_pixels(ref_plain["o2m_reg"])[0],
                               permute_to_N_HWA_K(ref_plain["o2m_reg"][0], 4))  # pixels stay pixels
    with pytest.raises(ValueError, match="apply to the FCOS o2m branch"):
        build(["model.o2m=retinanet", "model.head.o2m=retinanet", "model.head.o2m_norm_on_bbox=True"])


@pytest.mark.parametrize("o2m", ["fcos", "retinanet"])
def test_share_scales_false_gives_the_o2m_predictor_its_own_scales(o2m):
    """A control, not DATE: with share_scales=False the o2m box output is multiplied by o2m_scales and
    the o2o one still by scales, so the o2m branch's gradient reaches only o2m_scales. The default
    keeps one set for both branches, and its state_dict keys."""
    style = ["model.o2m=retinanet", "model.head.o2m=retinanet"] if o2m == "retinanet" else []
    shared = build(style + ["model.head.share_subnets=False"])
    own = build(style + ["model.head.share_subnets=False", "model.head.share_scales=False"])
    assert set(own.state_dict()) - set(shared.state_dict()) == {"head.o2m_scales"}
    assert not hasattr(shared.head, "o2m_scales")
    decode = (lambda t: t.exp()) if o2m == "fcos" else (lambda t: t)
    for model in (shared, own):
        head = model.head
        with torch.no_grad():
            head.scales.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5]))
            if model is own:
                head.o2m_scales.copy_(torch.tensor([2.0, 0.25, 3.0, 0.75, 1.25]))
        o2m_scales = head.o2m_scales if model is own else head.scales
        feats = [torch.randn(2, head.cls_score.in_channels, H // s, W // s) for s in model.strides]
        cls_feats, reg_feats = head.forward_towers(feats)
        o2o_ltrb = head.forward_o2o(cls_feats, reg_feats)[1]
        out = head.forward_o2m(feats, cls_feats, reg_feats)
        for lvl, x in enumerate(feats):
            raw = head.o2m_bbox_pred(head.o2m_bbox_subnet(x))
            torch.testing.assert_close(out["o2m_reg"][lvl], decode(raw * o2m_scales[lvl]))
            torch.testing.assert_close(o2o_ltrb[lvl], torch.relu(head.bbox_pred(reg_feats[lvl]) * head.scales[lvl]))
        sum(t.sum() for t in out["o2m_reg"]).backward()
        if model is own:  # the o2m output reaches only the o2m scales
            assert head.scales.grad is None and head.o2m_scales.grad.abs().min() > 0
        else:
            assert head.scales.grad.abs().min() > 0


def test_o2o_detach_features_stops_the_o2o_loss_at_the_head():
    """A control, not DATE: with o2o_detach_features=True only the o2m branch's outputs reach the FPN
    features; by default both do. It needs separate o2m towers."""
    for detach in (False, True):
        model = build(["model.head.share_subnets=False", f"model.head.o2o_detach_features={detach}"])
        head = model.head.train()
        feats = [torch.randn(2, head.cls_score.in_channels, H // s, W // s, requires_grad=True) for s in model.strides]
        out = head(feats)
        o2o = sum(t.sum() for t in out["o2o_cls"] + out["o2o_reg"])
        o2m = sum(t.sum() for t in out["o2m_cls"] + out["o2m_reg"])
        o2o_grads = torch.autograd.grad(o2o, feats, allow_unused=True)
        o2m_grads = torch.autograd.grad(o2m, feats, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in o2m_grads)
        if detach:
            assert all(g is None for g in o2o_grads)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in o2o_grads)
    with pytest.raises(ValueError, match="needs share_subnets=False"):
        build(["model.head.o2o_detach_features=True"])


def test_onenet_cost_matcher_trains():
    model = build(["model.o2o_matcher=onenet_cost"])
    model.train()
    with EventStorage(0) as storage:
        losses = model(batch([crowded(40), instances([])]))
        assert all(torch.isfinite(v) for v in losses.values())
        assert storage.histories()["date/num_o2o_matched"].latest() == 20  # 40 GTs over 2 images


# ------------------------------------------------------------------------------------ inference
def _forbid_nms():
    def boom(*a, **k):
        raise AssertionError("DATE inference must not run NMS")

    import detectron2.layers
    import detectron2.modeling.meta_arch.fcos
    import detectron2.modeling.meta_arch.retinanet
    import torchvision.ops

    return [
        mock.patch.object(detectron2.layers, "batched_nms", boom),
        mock.patch.object(detectron2.modeling.meta_arch.fcos, "batched_nms", boom),
        mock.patch.object(detectron2.modeling.meta_arch.retinanet, "batched_nms", boom),
        mock.patch.object(torchvision.ops, "nms", boom),
        mock.patch.object(torchvision.ops, "batched_nms", boom),
        mock.patch.object(torch.ops.torchvision, "nms", boom),
    ]


@pytest.mark.parametrize("variant", ["DATE-F", "3DMF"])
def test_eval_returns_at_most_100_detections_without_nms(variant):
    model = build(VARIANTS[variant])
    model.eval()
    model.test_score_thresh = 0.0  # every candidate passes: the cap is what limits the output
    # untrained ltrb ~ 0 gives empty boxes, which detector_postprocess drops: make them ~2 strides
    torch.nn.init.constant_(model.head.bbox_pred.bias, 2.0)
    patches = _forbid_nms()
    for p in patches:
        p.start()
    try:
        with torch.no_grad():
            out = model(infer_inputs(2))
            model.max_detections_per_image = 7
            out7 = model(infer_inputs(1))
    finally:
        for p in patches:
            p.stop()
    for o in out:
        inst = o["instances"]
        assert len(inst) == 100
        s = inst.scores
        assert torch.all(s[:-1] >= s[1:])
        assert inst.pred_classes.min() >= 0 and inst.pred_classes.max() < 3
    assert len(out7[0]["instances"]) == 7
    # NMS would have removed some of the top-100 (untrained boxes overlap heavily): we did not.
    boxes = out[0]["instances"].pred_boxes.tensor
    from detectron2.structures import pairwise_iou

    iou = pairwise_iou(Boxes(boxes), Boxes(boxes)).fill_diagonal_(0)
    assert (iou > 0.6).any()


def test_nms_at_inference_is_an_option_for_checking_the_method():
    """``model.test_nms_thresh`` (None by default) applies class-wise NMS to the o2o detections, for
    the paper's check that NMS no longer changes DATE's output (Table 6)."""
    from detectron2.structures import pairwise_iou

    model = build(["model.test_nms_thresh=0.6"])
    model.eval()
    model.test_score_thresh = 0.0
    torch.nn.init.constant_(model.head.bbox_pred.bias, 2.0)  # untrained boxes of ~2 strides overlap
    with torch.no_grad():
        inst = model(infer_inputs(1))[0]["instances"]
    assert 0 < len(inst) < 100  # without NMS: 100 (test above)
    same_class = inst.pred_classes[:, None] == inst.pred_classes[None, :]
    iou = pairwise_iou(inst.pred_boxes, inst.pred_boxes).fill_diagonal_(0)
    assert not (iou[same_class] > 0.6).any()
    assert build().test_nms_thresh is None


def _reference_detections(model, images_list):
    """docs/methods.md#date-inference, literally: per level score > thr, top-k per level, merge, top-k per image (loops)."""
    with torch.no_grad():
        x = (images_list[0][None] - model.pixel_mean) / model.pixel_std
        feats = model.backbone(x)
        features = [feats[f] for f in model.head_in_features]
        cls_feats, reg_feats = model.head.forward_towers(features)
        cls, reg, filt = model.head.forward_o2o(cls_feats, reg_feats)
    cand = []
    K = model.num_classes
    for lvl, (c, r) in enumerate(zip(cls, reg)):
        s = model.strides[lvl]
        prob = c[0].sigmoid()
        if filt is not None:
            prob = prob * filt[lvl][0].sigmoid()
        level = []
        for k in range(K):
            for i in range(prob.shape[1]):
                for j in range(prob.shape[2]):
                    p = float(prob[k, i, j])
                    if p > model.test_score_thresh:
                        cx, cy = (j + 0.5) * s, (i + 0.5) * s
                        l, t, rr, b = (float(v) * s for v in r[0, :, i, j])
                        level.append((p, k, [cx - l, cy - t, cx + rr, cy + b]))
        level.sort(key=lambda z: -z[0])
        cand += level[: model.test_topk_candidates]
    cand.sort(key=lambda z: -z[0])
    return cand[: model.max_detections_per_image]


def _raw_inference(model, img):
    """forward_inference's Instances before detector_postprocess (which drops empty boxes)."""
    with torch.no_grad():
        images = model.preprocess_image([{"image": img}])
        feats = model.backbone(images.tensor)
        features = [feats[f] for f in model.head_in_features]
        return model.forward_inference(images, features, model.head(features))[0]


def test_inference_equals_literal_threshold_topk_merge():
    model = build(["model.head.use_3dmf=True"])
    model.eval()
    model.test_topk_candidates = 30
    model.max_detections_per_image = 50
    model.test_score_thresh = 0.0
    out = _raw_inference(model, image(3))
    assert len(out) == 50
    # a threshold in the middle of the top-50 scores, so that it bites
    model.test_score_thresh = float(out.scores.median())
    out = _raw_inference(model, image(3))
    ref = _reference_detections(model, [image(3)])
    assert 0 < len(out) == len(ref) < 50
    torch.testing.assert_close(out.scores, torch.tensor([r[0] for r in ref]), rtol=1e-5, atol=1e-6)
    ref_boxes = Boxes(torch.tensor([r[2] for r in ref]))
    ref_boxes.clip((H, W))
    torch.testing.assert_close(out.pred_boxes.tensor, ref_boxes.tensor, rtol=1e-4, atol=1e-3)
    assert out.pred_classes.tolist() == [r[1] for r in ref]


@pytest.mark.parametrize("variant", ["DATE-F", "DATE-R", "separate-subnets"])
def test_o2m_branch_not_called_in_eval(variant):
    model = build(VARIANTS[variant])
    head = model.head
    calls = []
    o2m_modules = [head.o2m_cls_score, head.o2m_bbox_pred] + ([head.o2m_ctrness] if head.o2m_ctrness is not None else [])
    if not head.share_subnets:
        o2m_modules += [head.o2m_cls_subnet, head.o2m_bbox_subnet]
    handles = [m.register_forward_hook(lambda *a: calls.append(1)) for m in o2m_modules]
    model.train()
    with EventStorage(0):
        model(batch([instances([[10, 10, 60, 60]])]))
    assert calls, "hooks must fire in training (else this test could not fail)"
    calls.clear()
    model.eval()
    with mock.patch.object(type(head), "forward_o2m", side_effect=AssertionError("o2m called in eval")):
        with torch.no_grad():
            out = model(infer_inputs(1))
    assert calls == [] and "instances" in out[0]
    for h in handles:
        h.remove()


def _reference_o2m_detections(model, img):
    """docs/methods.md#date-inference, the ``test_branch="o2m"`` diagnostic, literally (loops): per
    level σ(cls) > thr and its top-k by σ(cls); score σ(cls)·σ(ctr) (FCOS) or σ(cls); clip; greedy
    class-wise NMS; top max_detections_per_image."""
    import alignment_det.modeling.meta_arch.date as date_mod
    from detectron2.structures import pairwise_iou

    with torch.no_grad():
        images = model.preprocess_image([{"image": img}])
        feats = model.backbone(images.tensor)
        features = [feats[f] for f in model.head_in_features]
        cls_feats, reg_feats = model.head.forward_towers(features)
        o2m = model.head.forward_o2m(features, cls_feats, reg_feats)
        anchors = model.o2m_anchor_generator(features) if model.o2m == "retinanet" else None
    K, (h, w) = model.num_classes, images.image_sizes[0]
    cand = []
    for lvl, (c, r) in enumerate(zip(o2m["o2m_cls"], o2m["o2m_reg"])):
        s = model.strides[lvl]
        A = c.shape[1] // K
        level = []
        for i in range(c.shape[2]):
            for j in range(c.shape[3]):
                for a in range(A):
                    for k in range(K):
                        p = float(c[0, a * K + k, i, j].sigmoid())
                        if p <= date_mod.O2M_TEST_SCORE_THRESH:
                            continue
                        d = r[0, a * 4:(a + 1) * 4, i, j]
                        if anchors is None:  # ltrb in pixels around ((j + 0.5)·s, (i + 0.5)·s)
                            if model.head.o2m_norm_on_bbox:  # the head gave strides
                                d = d * s
                            cx, cy = (j + 0.5) * s, (i + 0.5) * s
                            box = [cx - float(d[0]), cy - float(d[1]), cx + float(d[2]), cy + float(d[3])]
                            score = p * float(o2m["o2m_ctr"][lvl][0, 0, i, j].sigmoid())
                        else:
                            anchor = anchors[lvl].tensor[(i * c.shape[3] + j) * A + a]
                            box = model.o2m_box2box_transform.apply_deltas(d[None], anchor[None])[0].tolist()
                            score = p
                        box = [min(max(box[0], 0), w), min(max(box[1], 0), h), min(max(box[2], 0), w), min(max(box[3], 0), h)]
                        level.append((p, score, k, box))
        level.sort(key=lambda z: -z[0])
        cand += level[: date_mod.O2M_TEST_TOPK_CANDIDATES]
    cand.sort(key=lambda z: -z[1])
    kept = []
    for z in cand:  # greedy NMS within each class
        same = [y for y in kept if y[2] == z[2]]
        if same:
            iou = pairwise_iou(Boxes(torch.tensor([z[3]])), Boxes(torch.tensor([y[3] for y in same])))
            if float(iou.max()) > date_mod.O2M_TEST_NMS_THRESH:
                continue
        kept.append(z)
    return kept[: model.max_detections_per_image], len(cand)


@pytest.mark.parametrize("variant", ["DATE-F", "DATE-R", "o2m-fcos-switches"])
def test_o2m_test_branch_decodes_the_o2m_predictor_like_its_detector(variant, monkeypatch):
    """``model.test_branch="o2m"`` (a diagnostic) evaluates the training-only predictor with its
    family's decoding and NMS; checked against the literal loops above, with the top-k, the
    threshold, NMS and the detection cap all biting."""
    import alignment_det.modeling.meta_arch.date as date_mod

    model = build(VARIANTS[variant] + ["model.test_branch=o2m"])
    model.eval()
    head = model.head
    torch.nn.init.normal_(head.o2m_cls_score.bias, 0.0, 1.0)  # untrained σ(cls) ≈ 0.01: lift it
    # ~12 px boxes (exp), 5 strides (norm_on_bbox), RetinaNet's anchors unchanged
    torch.nn.init.constant_(head.o2m_bbox_pred.bias, 0.0 if variant == "DATE-R" else 2.5)
    monkeypatch.setattr(date_mod, "O2M_TEST_TOPK_CANDIDATES", 40)
    monkeypatch.setattr(date_mod, "O2M_TEST_SCORE_THRESH", 0.3)
    model.max_detections_per_image = 60
    img = image(5)
    with torch.no_grad():
        images = model.preprocess_image([{"image": img}])
        feats = model.backbone(images.tensor)
        features = [feats[f] for f in model.head_in_features]
        out = model.forward_inference(images, features, model.head(features))[0]
    ref, num_candidates = _reference_o2m_detections(model, img)
    assert 0 < len(out) == len(ref) <= 60 and num_candidates > len(ref)  # NMS or the cap removed some
    assert out.scores.numel() == len(ref)
    torch.testing.assert_close(out.scores, torch.tensor([r[1] for r in ref]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.pred_boxes.tensor, torch.tensor([r[3] for r in ref]), rtol=1e-4, atol=1e-3)
    assert out.pred_classes.tolist() == [r[2] for r in ref]
    # the method's own inference (o2o) gives other detections from the same weights
    model.test_branch = "o2o"
    with torch.no_grad():
        o2o = model.forward_inference(images, features, model.head(features))[0]
    assert len(o2o) != len(out) or not torch.equal(o2o.scores, out.scores)


def test_test_branch_is_checked_and_export_refuses_the_diagnostic():
    with pytest.raises(ValueError, match="test_branch must be one of"):
        build(["model.test_branch=o2n"])
    model = build(["model.test_branch=o2m"]).eval()
    with pytest.raises(ValueError, match="exports the method's o2o inference"):
        model.export_forward(image(0)[None])


# ------------------------------------------------------------------------------------ checkpoint
def test_fcos_checkpoint_loads_with_only_new_layers_missing():
    fcos_cfg = load_config(os.path.join(ROOT, "configs", "quick_schedules", "fcos_instant_test.py"))
    torch.manual_seed(1)
    fcos = instantiate(fcos_cfg.model)
    model = build()
    sd = fcos.state_dict()
    result = model.load_state_dict(sd, strict=False)
    missing = set(result.missing_keys)
    new_layers = ("head.scales", "head.o2m_cls_score.", "head.o2m_bbox_pred.", "head.o2m_ctrness.")
    assert missing and all(k.startswith(new_layers) for k in missing), sorted(missing)
    # FCOS's centerness (on its bbox tower) and the tower conv biases (DATE's towers have none: GN
    # follows) have no counterpart
    unexpected = set(result.unexpected_keys)
    assert all(k.startswith("head.ctrness.") or re.fullmatch(r"head\.(cls|bbox)_subnet\.\d+\.bias", k) for k in unexpected)
    # and the shared keys really were loaded
    for k in ("head.cls_score.weight", "head.bbox_pred.weight", "head.cls_subnet.0.weight", "backbone.fpn_output3.weight"):
        torch.testing.assert_close(model.state_dict()[k], sd[k])


# ---------------------------------------------------------------------------------------- export
def _check_export_outputs(model, imgs, boxes, scores, classes):
    with torch.no_grad():
        eager = model([{"image": imgs[i]} for i in range(len(imgs))])
    assert boxes.shape[:2] == scores.shape == classes.shape and boxes.shape[1] == 100
    for i in range(len(imgs)):
        inst = eager[i]["instances"]
        valid = classes[i] >= 0
        assert torch.equal(valid, scores[i] > 0)
        assert int(valid.sum()) == len(inst)
        torch.testing.assert_close(scores[i][valid], inst.scores)
        torch.testing.assert_close(boxes[i][valid], inst.pred_boxes.tensor, rtol=1e-5, atol=1e-4)
        assert torch.equal(classes[i][valid], inst.pred_classes)
        assert torch.all(scores[i][~valid] == 0)
    assert 0 < int((classes[0] >= 0).sum()) < 100  # the threshold bit: some rows are padding


def _export_model(variant):
    model = build(VARIANTS[variant])
    model.eval()
    torch.nn.init.constant_(model.head.bbox_pred.bias, 1.0)  # non-empty boxes (postprocess drops empty ones)
    imgs = torch.stack([image(5), image(6)])
    model.test_score_thresh = 0.0
    # a threshold inside the top-100 scores of image 0, so that some rows become padding
    model.test_score_thresh = float(_raw_inference(model, imgs[0]).scores.median())
    return model, imgs


@pytest.mark.parametrize("variant", ["DATE-F", "3DMF"])
def test_torchscript_export_equals_eager(variant, tmp_path):
    model, imgs = _export_model(variant)
    path = str(tmp_path / "date.ts")
    export_torchscript(model, imgs, path)
    traced = torch.jit.load(path)
    graph = str(traced.inlined_graph)
    assert "nms" not in graph and "o2m" not in graph  # one NMS-free graph without the o2m branch
    assert not any("o2m" in k for k in traced.state_dict())
    with torch.no_grad():
        boxes, scores, classes = traced(imgs)
    _check_export_outputs(model, imgs, boxes, scores, classes)
    assert any(k.startswith("head.o2m_") for k in model.state_dict())  # the model itself is untouched


@pytest.mark.parametrize("variant", ["DATE-F", "DATE-R"])
def test_torch_export_equals_eager(variant):
    model, imgs = _export_model(variant)
    ep = export_program(model, imgs)
    assert "nms" not in str(ep.graph)
    assert not any("o2m" in k for k in ep.state_dict)
    with torch.no_grad():
        boxes, scores, classes = ep.module()(imgs)
    _check_export_outputs(model, imgs, boxes, scores, classes)


# --------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("config", DATE_CONFIGS)
def test_config_builds_date_with_its_optimizer(config):
    # Loading, saving and reloading every config is tests/test_configs.py's.
    again = LazyConfig.load(os.path.join(ROOT, config))
    model = instantiate(again.model)
    assert isinstance(model, DATE)
    again.optimizer.params.model = model
    opt = instantiate(again.optimizer)
    assert isinstance(opt, torch.optim.AdamW)
    base_lr = again.optimizer.lr
    # lr x0.1 on the ResNet only (mmdet's "backbone"): Detectron2's backbone module is the FPN and
    # holds the ResNet as bottom_up; the FPN's convs and P6/P7 train at the full rate. The instant
    # test trains from scratch: its preset sets the factor to 1 (nothing pretrained to protect).
    factor = again.optimizer.params.lr_factor_func.factor
    assert factor == (1.0 if "instant" in config else 0.1)
    lr_of = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    resnet = [n for n, p in names.items() if n.startswith("backbone.bottom_up.") and p.requires_grad]  # not frozen
    fpn = [n for n in names if n.startswith(("backbone.fpn_", "backbone.top_block."))]
    assert any(".top_block.p6." in n for n in fpn) and any("fpn_lateral" in n for n in fpn) and resnet
    assert all(math.isclose(lr_of[id(names[n])], base_lr) for n in fpn), "FPN / P6 / P7 must train at the full lr"
    assert all(math.isclose(lr_of[id(names[n])], factor * base_lr) for n in resnet)
    assert again.train.clip_grad.enabled and again.train.clip_grad.clip_type == "full_model"
    sched = instantiate(again.lr_multiplier)
    assert 0 < sched(0.0) < sched(0.99) or sched(0.99) < 1  # warm-up then decay
    lr_cfg = again.lr_multiplier
    if "instant" not in config:
        assert math.isclose(base_lr, 4e-4) and again.train.clip_grad.clip_value == 0.1
        assert math.isclose(sched(0.0), 0.001, rel_tol=1e-6)
        assert math.isclose(lr_cfg.warmup_length * again.train.max_iter, 1000, rel_tol=1e-3)
        assert lr_cfg.scheduler.num_updates == again.train.max_iter
    if "3x" in config:
        iters_per_epoch = 117266 / 16
        assert abs(again.train.max_iter - 36 * iters_per_epoch) < 1
        assert [m / iters_per_epoch for m in lr_cfg.scheduler.milestones] == pytest.approx([24, 33], abs=1e-3)
    if "_R_" in config:
        assert model.o2m == "retinanet" and model.head.num_anchors == 9
    if "3dmf" in config:
        assert model.head.max_filter is not None
    if "crowdhuman" in config:
        assert model.max_detections_per_image == 500 and model.o2o_matcher == "onenet_cost"
    if "R101" in config:
        assert len(model.backbone.bottom_up.res4) == 23


# -------------------------------------------------------------------------------------- CrowdHuman
def test_crowdhuman_odgt_parsing(tmp_path):
    from PIL import Image
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    from alignment_det.data.crowdhuman import load_crowdhuman_odgt, register_crowdhuman

    root = tmp_path / "Images"
    root.mkdir()
    Image.new("RGB", (64, 48)).save(root / "img_a.jpg")
    recs = [
        {
            "ID": "img_a",
            "gtboxes": [
                {"tag": "person", "fbox": [1, 2, 30, 40], "vbox": [5, 5, 5, 5], "extra": {"ignore": 0}},
                {"tag": "person", "fbox": [10, 10, 5, 5], "extra": {"ignore": 1}},
                {"tag": "mask", "fbox": [20, 0, 10, 10], "extra": {}},
            ],
        },
        {"ID": "img_b", "height": 100, "width": 200, "gtboxes": []},
    ]
    odgt = tmp_path / "ann.odgt"
    odgt.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    dicts = load_crowdhuman_odgt(str(odgt), str(root))
    assert [d["image_id"] for d in dicts] == ["img_a", "img_b"]
    a, b = dicts
    assert (a["height"], a["width"]) == (48, 64)  # from the image header
    assert (b["height"], b["width"]) == (100, 200) and b["annotations"] == []
    assert a["file_name"] == str(root / "img_a.jpg")
    assert [x["bbox"] for x in a["annotations"]] == [[1, 2, 30, 40], [10, 10, 5, 5], [20, 0, 10, 10]]
    assert [x["iscrowd"] for x in a["annotations"]] == [0, 1, 1]
    assert all(x["category_id"] == 0 and x["bbox_mode"] == BoxMode.XYWH_ABS for x in a["annotations"])

    register_crowdhuman("crowdhuman_test_tiny", str(odgt), str(root))
    register_crowdhuman("crowdhuman_test_tiny", str(odgt), str(root))  # idempotent
    with pytest.raises(ValueError):
        register_crowdhuman("crowdhuman_test_tiny", str(odgt) + "x", str(root))
    assert MetadataCatalog.get("crowdhuman_test_tiny").thing_classes == ["person"]
    assert len(DatasetCatalog.get("crowdhuman_test_tiny")) == 2
    bad = tmp_path / "bad.odgt"
    bad.write_text('{"gtboxes": []}\n')
    with pytest.raises(ValueError, match="bad.odgt:1"):
        load_crowdhuman_odgt(str(bad), str(root))


# ------------------------------------------------------------------------------ train_net.py CLI
def test_instant_test_trains_then_eval_only_prints_ap(instant_run):
    run = instant_run("date_instant_test.py")
    assert run.final.is_file()
    assert any("date/num_o2o_matched" in m and "loss_o2m_cls" in m for m in run.metrics())
    text = run.eval_only()
    m = re.search(r"copypaste: ([-\d.nan]+),", text.split("copypaste: AP,AP50")[-1])
    assert "copypaste: AP,AP50" in text and m is not None
    ap = float(m.group(1))
    assert math.isnan(ap) or 0.0 <= ap <= 100.0


def test_backbone_lr_factor_spares_the_fpn_on_parameter_names():
    # The names of a built DATE R50 model: the ResNet (bottom_up) gets x0.1, the FPN's lateral and
    # output convs and P6/P7 (top_block) x1, as mmdet's custom_keys={'backbone': 0.1} (backbone =
    # ResNet there; FPN = neck), and the head x1.
    cfg = LazyConfig.load(os.path.join(ROOT, "configs/date_F_R50_1x.py"))
    model = instantiate(cfg.model)
    factor = backbone_lr_factor(0.1)
    got = {n: factor(n) for n, _ in model.named_parameters()}
    assert {n for n, f in got.items() if f == 0.1} == {"backbone.bottom_up." + n for n, _ in model.backbone.bottom_up.named_parameters()}
    assert got["backbone.fpn_lateral3.weight"] == got["backbone.fpn_output5.bias"] == 1.0
    assert got["backbone.top_block.p7.weight"] == got["head.cls_score.weight"] == 1.0
    # A backbone without FPN (no bottom_up) is the ResNet itself: all of it gets the factor.
    assert factor("backbone.res2.0.conv1.weight") == 0.1 and factor("head.scales") == 1.0
