"""ATSS (the HCRAL baseline) end to end on Detectron2: head, assignment, losses against Detectron2's
own pieces, inference score, FCOS checkpoint loading, instant test through train_net.py."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import math  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from fvcore.nn import giou_loss  # noqa: E402

from _cli import instant_config  # noqa: E402
from _inputs import tiny_model  # noqa: E402
from alignment_det.assigners.atss import square_anchor_grid  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.heads import ATSSHead  # noqa: E402
import alignment_det.modeling.meta_arch.atss as atss_module  # noqa: E402
from alignment_det.modeling.meta_arch import ATSS  # noqa: E402
# The RetinaNet-Conf tests' tiny 128x160 inputs: image batches, GT Instances, a training step.
from test_retinanet_conf_e2e import H, W, batch, empty, images, instances, train_losses, two_boxes  # noqa: E402,F401

INSTANT = instant_config("atss_instant_test.py")


def build(config=INSTANT, *overrides, seed=0):
    return tiny_model(config, *overrides, seed=seed)


def crowded(n=300, seed=1, num_classes=3):
    """``n`` random boxes incl. a 0.5-px box, a zero-width box and duplicates."""
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([W, H]) - wh)
    b = torch.cat([xy, xy + wh], dim=1)
    b[0] = torch.tensor([20.0, 20.0, 20.5, 20.5])
    b[1] = torch.tensor([30.0, 30.0, 30.0, 70.0])
    b[2] = b[3]
    return instances(b, torch.randint(0, num_classes, (n,), generator=g))


# ---------------------------------------------------------------------------- structure
def test_head_is_fcos_head_plus_scales_with_quality_on_the_box_tower():
    model = build()
    assert isinstance(model, ATSS) and isinstance(model.head, ATSSHead)
    assert model.head.scales.shape == (5,) and torch.all(model.head.scales == 1)
    assert torch.all(model.head.bbox_pred.bias == 4.0)  # ATSS point init: first boxes = 8·s anchors
    losses, _ = train_losses(model, batch(two_boxes(), crowded(30)))
    model.zero_grad()
    losses["loss_quality"].backward()
    grad = lambda mod: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)  # noqa: E731
    assert grad(model.head.bbox_subnet) > 0 and grad(model.head.ctrness) > 0
    assert grad(model.head.cls_subnet) == 0 and grad(model.head.cls_score) == 0


def test_assignment_anchors_are_8_stride_squares_on_fcos_locations():
    model = build()
    feats = [torch.zeros(1, 1, h, w) for h, w in ((16, 20), (8, 10), (4, 5), (2, 3), (1, 2))]
    points = model.anchor_generator(feats)
    sq = model.assignment_anchors(points)
    p = Boxes.cat(points).tensor
    torch.testing.assert_close((sq[:, :2] + sq[:, 2:]) / 2, (p[:, :2] + p[:, 2:]) / 2)
    torch.testing.assert_close(sq[:, 2] - sq[:, 0], 8 * (p[:, 2] - p[:, 0]))
    assert sorted(set((p[:, 2] - p[:, 0]).tolist())) == [8, 16, 32, 64, 128]
    # the pure layer's grid (benchmarks, unit tests) is the same set of anchors
    torch.testing.assert_close(sq, square_anchor_grid(128, 160)[0])


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("case", ["all_empty", "half_empty", "crowded"])
def test_training_losses_finite_and_backprop(case):
    gts = {"all_empty": (empty(), empty()), "half_empty": (two_boxes(), empty()), "crowded": (crowded(), two_boxes())}[case]
    model = build()
    losses, scalars = train_losses(model, batch(*gts))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_quality"}
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), (case, k, v)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if case == "all_empty":
        assert losses["loss_box_reg"].item() == 0 and losses["loss_quality"].item() == 0
        assert losses["loss_box_reg"].requires_grad and scalars["num_pos_anchors"] == 0
    else:
        assert scalars["atss/pos_per_gt"] > 0 and "atss/eatss_extra_per_gt" not in scalars


def test_num_classes_1():
    model = build(INSTANT, "model.num_classes=1")
    assert model.head.cls_score.out_channels == 1
    losses, _ = train_losses(model, batch(crowded(50, num_classes=1), empty()))
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(images(1))
    assert len(out[0]["instances"]) == 0 or out[0]["instances"].pred_classes.max() == 0


def test_box_and_quality_losses_equal_detectron2_pieces():
    """loss_box_reg = 2 Σ ctr·GIoU-loss / Σ ctr (fvcore's giou_loss) and loss_quality = BCE on
    centerness targets (Detectron2's ``FCOS.compute_ctrness_targets``) / #pos, on the same labels."""
    model = build()
    inputs = batch(two_boxes(), crowded(40))
    model.train()
    with EventStorage(0):
        losses = model(inputs)
        images_ = model.preprocess_image(inputs)
        feats = model.backbone(images_.tensor)
        features = [feats[f] for f in model.head_in_features]
        logits, deltas, quality = model._transpose_dense_predictions(model.head(features), [3, 4, 1])
        anchors = model.anchor_generator(features)
        labels, matched = model.label_anchors(anchors, [d["instances"] for d in inputs])
    labels = torch.stack(labels)
    pos = labels < model.num_classes
    ctr = model.compute_ctrness_targets(anchors, matched)[pos]  # Detectron2's FCOS centerness
    a = Boxes.cat(anchors).tensor
    pred_boxes = torch.stack([model.box2box_transform.apply_deltas(d, a) for d in torch.cat(deltas, 1)])[pos]
    gl = giou_loss(pred_boxes, torch.stack(matched)[pos], reduction="none")
    torch.testing.assert_close(losses["loss_box_reg"], 2.0 * (ctr * gl).sum() / ctr.sum(), rtol=1e-5, atol=1e-6)
    q = torch.cat(quality, 1).squeeze(-1)[pos]
    ref = F.binary_cross_entropy_with_logits(q, ctr, reduction="sum") / pos.sum()
    torch.testing.assert_close(losses["loss_quality"], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides", [[], ["model.head.aux=True"]])
def test_centerness_targets_are_computed_once_per_step(monkeypatch, overrides):
    # They weigh the box loss(es) and are the quality target: one computation serves all of them.
    calls = []
    real = atss_module.centerness_targets
    monkeypatch.setattr(atss_module, "centerness_targets", lambda *a: calls.append(1) or real(*a))
    losses, _ = train_losses(build(INSTANT, *overrides), batch(two_boxes(), crowded(40)))
    assert ("loss_box_reg_init" in losses) == bool(overrides)
    assert len(calls) == 1


def test_atss_carries_no_eatss_state():
    model = build()
    assert not any(hasattr(model, k) for k in ("num_extra_priors", "rank_iou", "eatss_ranks_by_pred"))
    assert model.assignment_info() == {"topk": 9}


# ---------------------------------------------------------------------------- inference
def test_inference_score_is_cls_times_quality_without_sqrt():
    model = build()
    model.eval()
    model.test_score_thresh = 0.0
    torch.nn.init.zeros_(model.head.ctrness.weight)
    out = {}
    for name, q in (("q1", 30.0), ("q025", math.log(0.25 / 0.75))):  # σ = 1 and 0.25
        torch.nn.init.constant_(model.head.ctrness.bias, q)
        with torch.no_grad():
            out[name] = model(images(1, seed=3))[0]["instances"]
    assert len(out["q1"]) == 100  # max_detections_per_image
    # σ(quality) = .25 scales every score by .25 (FCOS's sqrt would give .5); same boxes survive NMS.
    torch.testing.assert_close(out["q025"].scores, 0.25 * out["q1"].scores, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["q025"].pred_boxes.tensor, out["q1"].pred_boxes.tensor)
    assert model.test_nms_thresh == 0.6 and model.test_topk_candidates == 1000


# ---------------------------------------------------------------------------- checkpoint
def test_fcos_checkpoint_loads_with_only_scales_missing():
    fcos = build(instant_config("fcos_instant_test.py"), seed=1)
    model = build()
    result = model.load_state_dict(fcos.state_dict(), strict=False)
    assert result.missing_keys == ["head.scales"] and result.unexpected_keys == []
    for k in ("head.cls_score.weight", "head.bbox_pred.bias", "head.ctrness.weight", "head.bbox_subnet.0.weight"):
        torch.testing.assert_close(model.state_dict()[k], fcos.state_dict()[k])


def test_bad_configuration_is_a_clear_error():
    from detectron2.config import LazyCall as L
    from detectron2.modeling.meta_arch.fcos import FCOSHead

    cfg = load_config(INSTANT)
    h = cfg.model.head
    cfg.model.head = L(FCOSHead)(input_shape=h.input_shape, conv_dims=h.conv_dims, num_classes=3, norm="GN")
    with pytest.raises(ValueError, match="ATSSHead"):
        instantiate(cfg.model)
    with pytest.raises(ValueError, match="quality_target"):
        build(INSTANT, "model.quality_target=ctr")


# ------------------------------------------------------------------------ train_net.py CLI
def test_instant_test_trains_then_eval_only(instant_run):
    run = instant_run("atss_instant_test.py")
    assert any("atss/pos_per_gt" in m and "loss_quality" in m for m in run.metrics())
    text = run.eval_only()
    assert "copypaste: AP,AP50" in text
    m = re.search(r"copypaste: ([-\d.nan]+),", text.split("copypaste: AP,AP50")[-1])
    assert m is not None and (math.isnan(float(m.group(1))) or 0.0 <= float(m.group(1)) <= 100.0)
