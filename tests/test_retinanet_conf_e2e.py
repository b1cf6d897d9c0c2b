"""End-to-end tests of RetinaNet-Conf in Detectron2 (docs/methods.md#retinanet-conf).

Tiny models (the instant-test shrink: ResNet-18, 64-channel FPN/head, 3 classes) on
~128 px random images, CPU.
"""
from _requires import detectron2_or_skip

detectron2_or_skip()

import glob  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from alignment_det.modeling.meta_arch import RetinaNet  # noqa: E402
from detectron2.structures import Boxes, pairwise_iou  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from _inputs import gt_instances, random_batch, tiny_model  # noqa: E402

from alignment_det.checkpoint import CheckedCheckpointer, CheckpointMismatchError  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.heads.retinanet_conf_head import RetinaNetConfHead  # noqa: E402
from alignment_det.modeling.meta_arch.retinanet_conf import RetinaNetConf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANT = os.path.join(ROOT, "configs/quick_schedules/retinanet_conf_instant_test.py")
BASE_INSTANT = os.path.join(ROOT, "configs/quick_schedules/retinanet_instant_test.py")
H, W = 128, 160


def build(config=INSTANT, *overrides, seed=0):
    return tiny_model(config, *overrides, seed=seed)


instances = gt_instances
batch = random_batch


def empty():
    return instances(torch.zeros(0, 4), torch.zeros(0))


def two_boxes():
    return instances([[10.0, 12.0, 60.0, 70.0], [50.0, 40.0, 150.0, 120.0]], [0, 2])


def crowded(n=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([W, H]) - wh)
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([20.0, 20.0, 20.5, 20.5])  # a 0.5-px box
    return instances(boxes, torch.randint(0, 3, (n,), generator=g))


def images(n=2, seed=0):
    return [{k: v for k, v in d.items() if k != "instances"} for d in batch(*[empty()] * n, seed=seed)]


def train_losses(model, inputs):
    model.train()
    with EventStorage(0) as storage:
        losses = model(inputs)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    return losses, scalars


# ---------------------------------------------------------------- structure


def test_head_obj_conv_on_cls_tower_and_init():
    model = build()
    head = model.head
    assert isinstance(model, RetinaNetConf) and isinstance(head, RetinaNetConfHead)
    conv = head.obj_score
    num_anchors = head.bbox_pred.out_channels // 4
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (
        head.cls_score.in_channels, num_anchors, (3, 3), (1, 1))
    assert torch.count_nonzero(conv.bias) == 0
    assert 0.005 < conv.weight.std().item() < 0.015  # N(0, 0.01)
    feats = [torch.randn(2, conv.in_channels, s, s) for s in (16, 8, 4, 2, 1)]
    logits, deltas, obj = head(feats)
    assert [tuple(o.shape) for o in obj] == [(2, num_anchors, s, s) for s in (16, 8, 4, 2, 1)]
    assert len(logits) == len(deltas) == 5


@pytest.mark.parametrize(
    "name,gts",
    [
        ("all_empty", lambda: (empty(), empty())),
        ("half_empty", lambda: (two_boxes(), empty())),
        ("crowded", lambda: (crowded(), two_boxes())),
    ],
)
def test_training_losses_finite_and_backprop(name, gts):
    model = build()
    losses, scalars = train_losses(model, batch(*gts()))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_obj"}
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), (name, k, v)
    sum(losses.values()).backward()
    grad = model.head.obj_score.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    if name == "all_empty":
        # docs/methods.md#retinanet-conf-edge-cases: no positives -> loss_obj is exactly 0 but still in the graph (zero gradient).
        assert losses["loss_obj"].item() == 0.0 and losses["loss_obj"].requires_grad
        assert torch.count_nonzero(grad) == 0
        assert "obj_target_mean_pos" not in scalars
    else:
        assert losses["loss_obj"].item() > 0
        assert 0.0 <= scalars["obj_target_mean_pos"] <= 1.0
        assert 0.0 < scalars["obj_pred_mean_pos"] < 1.0


def test_fusion_exponent_is_inference_only():
    # benchmarks/accuracy.py evaluates a trained RetinaNet-Conf again with a = 0 and calls the
    # result "the same training, ranked by the class score": that needs training to ignore a.
    inputs = batch(two_boxes(), crowded(40))
    runs = {}
    for alpha in (0.0, 0.4, 1.0):
        model = build(INSTANT, f"model.fusion_alpha={alpha}")
        losses, _ = train_losses(model, inputs)
        sum(losses.values()).backward()
        runs[alpha] = ({k: v.item() for k, v in losses.items()},
                       torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    for alpha in (0.4, 1.0):
        assert runs[alpha][0] == runs[0.0][0]
        assert torch.allclose(runs[alpha][1], runs[0.0][1], rtol=1e-5, atol=1e-6)  # summation order only


def test_loss_obj_reaches_cls_tower_not_box_tower():
    model = build()
    losses, _ = train_losses(model, batch(two_boxes(), crowded(40)))
    losses["loss_obj"].backward()
    head = model.head
    cls_grad = sum(p.grad.abs().sum() for p in head.cls_subnet.parameters() if p.grad is not None)
    assert cls_grad > 0
    # Box tower and box predictor get nothing: the conv is on the cls tower and the IoU target is detached.
    for p in list(head.bbox_subnet.parameters()) + list(head.bbox_pred.parameters()):
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert head.cls_score.weight.grad is None  # loss_obj does not touch the class predictor


def test_obj_targets_are_iou_of_decoded_boxes():
    """Zero box deltas decode to the anchors: the logged mean target is the mean matched anchor IoU."""
    model = build()
    torch.nn.init.zeros_(model.head.bbox_pred.weight)
    torch.nn.init.zeros_(model.head.bbox_pred.bias)
    inputs = batch(two_boxes(), crowded(20))
    _, scalars = train_losses(model, inputs)

    model.train()
    feats = model.backbone(model.preprocess_image(inputs).tensor)
    anchors = model.anchor_generator([feats[f] for f in model.head_in_features])
    labels, matched = model.label_anchors(anchors, [d["instances"] for d in inputs])
    all_anchors = Boxes.cat(anchors)
    ious = []
    for lab, gt in zip(labels, matched):
        pos = (lab >= 0) & (lab != model.num_classes)
        ious.append(pairwise_iou(Boxes(all_anchors.tensor[pos]), Boxes(gt[pos])).diagonal())
    expected = torch.cat(ious).mean().item()
    assert scalars["obj_target_mean_pos"] == pytest.approx(expected, rel=1e-5)


def test_celoss_w_and_gfocal_variants():
    model = build(INSTANT, "model.neg_weight=1e-4")
    losses, _ = train_losses(model, batch(empty(), empty()))
    # Negatives now contribute: positive loss even with no positive anchor.
    assert losses["loss_obj"].item() > 0
    plain = build()
    ce, _ = train_losses(plain, batch(two_boxes(), empty()))
    gf_model = build(INSTANT, "model.obj_loss_type=gfocal")
    gf, _ = train_losses(gf_model, batch(two_boxes(), empty()))
    # Same weights and inputs: |y - p|^2 <= 1 shrinks every term.
    assert 0 < gf["loss_obj"].item() < ce["loss_obj"].item()
    with pytest.raises(ValueError):
        build(INSTANT, "model.fusion_alpha=1.5")


# ---------------------------------------------------------------- inference


def _baseline_and_conf(alpha):
    base = build(BASE_INSTANT)
    base.eval()
    # Nontrivial scores: a random prior bias so that many candidates pass 0.05 and reach NMS.
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        base.head.cls_score.bias.copy_(torch.randn(base.head.cls_score.bias.shape, generator=g) - 2.0)
    conf = build(INSTANT, f"model.fusion_alpha={alpha}", seed=1)
    incompatible = conf.load_state_dict(base.state_dict(), strict=False)
    assert set(incompatible.missing_keys) == {"head.obj_score.weight", "head.obj_score.bias"}
    assert not incompatible.unexpected_keys
    with torch.no_grad():
        conf.head.obj_score.weight.normal_(0, 0.05)
        conf.head.obj_score.bias.fill_(-0.5)
    conf.eval()
    return base, conf


def test_alpha_zero_gives_exactly_retinanet_detections():
    base, conf = _baseline_and_conf(0.0)
    inputs = images(2, seed=5)
    with torch.no_grad():
        out_b, out_c = base(inputs), conf(inputs)
    for rb, rc in zip(out_b, out_c):
        ib, ic = rb["instances"], rc["instances"]
        assert len(ib) > 0
        assert torch.equal(ib.pred_boxes.tensor, ic.pred_boxes.tensor)
        assert torch.equal(ib.scores, ic.scores)
        assert torch.equal(ib.pred_classes, ic.pred_classes)
    # The same comparison can fail: with a = 0.4 the ranking scores differ.
    _, conf04 = _baseline_and_conf(0.4)
    with torch.no_grad():
        out_f = conf04(inputs)
    assert not torch.equal(out_f[0]["instances"].scores, out_b[0]["instances"].scores)


def _head_outputs(model, inputs):
    with torch.no_grad():
        images_ = model.preprocess_image(inputs)
        feats = model.backbone(images_.tensor)
        feats = [feats[f] for f in model.head_in_features]
        return images_, feats, model.head(feats)


def _dense_fused_scores(model, logits, obj, i):
    """Level-wise (R_l, K) fused scores of image i by the definition (``fuse_scores`` on the dense tensors)."""
    k = model.num_classes
    return [
        model.fuse_level_scores(
            lg[i].permute(1, 2, 0).reshape(-1, k).sigmoid(), ob[i].permute(1, 2, 0).reshape(-1, 1).sigmoid()
        )
        for lg, ob in zip(logits, obj)
    ]


@pytest.mark.parametrize("alpha,obj_thresh,topk", [(0.4, None, 1000), (0.4, None, 20), (0.2, None, 1000),
                                                   (0.6, 0.5, 1000), (1.0, None, 1000)])
def test_fused_inference_equals_dense_fusion_then_retinanet_steps(alpha, obj_thresh, topk):
    """The reference fuses the dense scores of EVERY level, then runs Detectron2's unmodified
    per-level step and RetinaNet.inference_single_image; the model must give the same detections."""
    _, conf = _baseline_and_conf(alpha)
    conf.test_obj_thresh = obj_thresh
    conf.test_topk_candidates = topk
    images_, feats, (logits, deltas, obj) = _head_outputs(conf, images(2, seed=7))
    anchors = conf.anchor_generator(feats)
    with torch.no_grad():
        results = conf.forward_inference(images_, feats, (logits, deltas, obj))
    for i, (got, size) in enumerate(zip(results, images_.image_sizes)):
        scores = _dense_fused_scores(conf, logits, obj, i)
        dl = [d[i].permute(1, 2, 0).reshape(-1, 4) for d in deltas]
        ref = RetinaNet.inference_single_image(conf, anchors, scores, dl, size)
        assert len(ref) > 0
        # Same candidates in the same order; scores equal up to the last bit of float32 pow
        # (a vectorised kernel on the dense tensor vs on the gathered candidates).
        assert torch.equal(got.pred_classes, ref.pred_classes)
        assert torch.equal(got.pred_boxes.tensor, ref.pred_boxes.tensor)
        torch.testing.assert_close(got.scores, ref.scores, rtol=1e-6, atol=1e-7)
        # Each level on its own, P7 included (the official code did not fuse small levels).
        lg = [x[i].permute(1, 2, 0).reshape(-1, conf.num_classes) for x in logits]
        ob = [x[i].permute(1, 2, 0).reshape(-1, 1) for x in obj]
        for lvl in range(len(anchors)):
            mine = conf._decode_per_level_fused(anchors[lvl], lg[lvl], ob[lvl], dl[lvl], conf.test_score_thresh,
                                                topk, size)
            theirs = conf._decode_per_level_predictions(anchors[lvl], scores[lvl], dl[lvl], conf.test_score_thresh,
                                                        topk, size)
            assert len(theirs) > 0 or obj_thresh is not None, lvl
            assert torch.equal(mine.pred_classes, theirs.pred_classes), lvl
            assert torch.equal(mine.pred_boxes.tensor, theirs.pred_boxes.tensor), lvl
            torch.testing.assert_close(mine.scores, theirs.scores, rtol=1e-6, atol=1e-7, msg=f"level {lvl}")


def test_obj_threshold_drops_low_confidence():
    _, conf = _baseline_and_conf(0.4)
    conf.test_obj_thresh = 0.5
    with torch.no_grad():
        conf.head.obj_score.weight.zero_()
        conf.head.obj_score.bias.fill_(-0.1)  # s_obj = 0.475 everywhere
        assert len(conf(images(1))[0]["instances"]) == 0
        conf.head.obj_score.bias.fill_(0.1)  # s_obj = 0.525
        assert len(conf(images(1))[0]["instances"]) > 0


# ---------------------------------------------------------------- checkpoints


def test_retinanet_checkpoint_loads_with_only_obj_conv_missing(tmp_path):
    base = build(BASE_INSTANT, seed=2)
    CheckedCheckpointer(base, str(tmp_path)).save("retinanet")
    conf = build(seed=3)
    incompatible = CheckedCheckpointer(conf, strict=False).load(str(tmp_path / "retinanet.pth"))
    assert incompatible is not None
    state = conf.state_dict()
    for key, value in base.state_dict().items():
        assert torch.equal(state[key], value), key
    assert set(state) - set(base.state_dict()) == {"head.obj_score.weight", "head.obj_score.bias"}
    # --eval-only's strict checkpointer refuses it: the confidence conv would stay random.
    with pytest.raises(CheckpointMismatchError, match="obj_score"):
        CheckedCheckpointer(build(seed=3), strict=True).load(str(tmp_path / "retinanet.pth"))


def test_full_size_state_dicts_differ_only_by_obj_conv():
    base = instantiate(load_config(os.path.join(ROOT, "configs/retinanet_R50.py"), []).model)
    conf = instantiate(load_config(os.path.join(ROOT, "configs/retinanet_conf_R50.py"), []).model)
    sb, sc = base.state_dict(), conf.state_dict()
    assert set(sc) - set(sb) == {"head.obj_score.weight", "head.obj_score.bias"}
    assert not set(sb) - set(sc)
    assert all(sb[k].shape == sc[k].shape for k in sb)
    assert tuple(sc["head.obj_score.weight"].shape) == (9, 256, 3, 3)


# ---------------------------------------------------------------- configs


CONFIGS = sorted(
    [os.path.join(ROOT, "configs", f) for f in
     ("retinanet_conf_R50.py", "retinanet_conf_R101.py", "retinanet_conf_R101_2x.py",
      "quick_schedules/retinanet_conf_instant_test.py")]
    + glob.glob(os.path.join(ROOT, "projects/RetinaNetConf/configs/*.py"))
)


def test_config_list_complete():
    names = {os.path.basename(c) for c in CONFIGS}
    assert {"loss_celoss_w.py", "loss_smooth_l1.py", "fusion_a00.py", "fusion_a10.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_loads_instantiates_and_round_trips(path, tmp_path):
    cfg = LazyConfig.load(path)
    out = tmp_path / "saved.yaml"
    LazyConfig.save(cfg, str(out))
    # Detectron2 falls back to pickling (saved.yaml.pkl) when a config is not serialisable.
    assert not os.path.exists(str(out) + ".pkl")
    again = LazyConfig.load(str(out))
    out2 = tmp_path / "saved_again.yaml"
    LazyConfig.save(again, str(out2))
    assert out.read_text() == out2.read_text()  # a fixed point: nothing lost or changed by save/load
    assert again.train.max_iter == cfg.train.max_iter
    model = instantiate(again.model)
    is_baseline = os.path.basename(path) == "retinanet_R50_600.py"
    assert type(model) is (RetinaNet if is_baseline else RetinaNetConf)
    assert model.smooth_l1_beta == (1.0 / 9 if "smooth_l1" in path else 0.0)
    if "instant" not in path:
        # The paper's scale, train and test: short side 600, long side <= 1000.
        train_resize = cfg.dataloader.train.mapper.augmentations[0]
        test_resize = cfg.dataloader.test.mapper.augmentations[0]
        assert train_resize.short_edge_length == 600 and train_resize.max_size == 1000
        assert test_resize.short_edge_length == 600 and test_resize.max_size == 1000
    if not is_baseline:
        expected_alpha = {"fusion_a00.py": 0.0, "fusion_a02.py": 0.2, "fusion_a05.py": 0.5,
                          "fusion_a06.py": 0.6, "fusion_a10.py": 1.0}.get(os.path.basename(path), 0.4)
        assert model.fusion_alpha == expected_alpha
    if "R101" in path:
        assert cfg.model.backbone.bottom_up.stages.depth == 101
        assert cfg.train.max_iter == (180000 if "2x" in path else 90000)


# ---------------------------------------------------------------- instant test through train_net.py


def test_instant_train_then_eval_only(instant_run):
    run = instant_run("retinanet_conf_instant_test.py")
    assert run.final.is_file()
    assert any("loss_obj" in m for m in run.metrics())
    log = run.eval_only()
    assert re.search(r"\|\s*AP\s*\|\s*AP50\s*\|", log), log[-3000:]
