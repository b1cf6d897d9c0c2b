"""HCRALATSS / HCRALRetinaNet end to end on Detectron2 (docs/methods.md#hcral-atss): training on
empty / half-empty / crowded GT, switches, AUX (star-DCN offset layout), checkpoints, configs, the
instant tests through train_net.py and the logged scalars."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import os  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.modeling.backbone.resnet import DeformBottleneckBlock  # noqa: E402
from torchvision.ops import deform_conv2d  # noqa: E402

from _cli import instant_config  # noqa: E402
from alignment_det.checkpoint import CheckedCheckpointer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.alwa import add_alwa  # noqa: E402
from alignment_det.modeling.heads import ATSSHead, ModulatedDeformConv3x3, star_dcn_offsets  # noqa: E402
import alignment_det.modeling.meta_arch.hcral as hcral_module  # noqa: E402
import detectron2.modeling.meta_arch.retinanet as d2_retinanet  # noqa: E402
from alignment_det.modeling.meta_arch import HCRALATSS, HCRALRetinaNet  # noqa: E402
from test_atss_e2e import batch, build, crowded, empty, images, train_losses, two_boxes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HCRAL = instant_config("hcral_atss_instant_test.py")
RETINA = instant_config("hcral_retinanet_instant_test.py")
ATSS_INSTANT = instant_config("atss_instant_test.py")
CASES = {
    "all_empty": lambda: (empty(), empty()),
    "half_empty": lambda: (two_boxes(), empty()),
    "crowded": lambda: (crowded(), two_boxes()),
}


def _grads_finite(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and all(torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------------------ HCRALATSS
@pytest.mark.parametrize("use_hcrac,use_hcrar", [(True, True), (True, False), (False, True), (False, False)])
def test_hcral_retinanet_computes_each_loss_once(monkeypatch, use_hcrac, use_hcrar):
    # RetinaNet's focal and box losses run only for the terms HCRA-C / HCRA-R do not replace (they
    # used to run in full and then be overwritten), and RetinaNet's EMA normaliser moves only then.
    calls = {"focal": 0, "box": 0}

    def counting(key, fn):
        def wrapped(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        return wrapped

    for module in (d2_retinanet, hcral_module):
        for name, key in (("sigmoid_focal_loss_jit", "focal"), ("_dense_box_regression_loss", "box")):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counting(key, getattr(module, name)))
    model = build(RETINA, f"model.use_hcrac={use_hcrac}", f"model.use_hcrar={use_hcrar}")
    assert not hasattr(model, "loss_normalizer")  # Detectron2's _ema_update makes it on first use
    losses, _ = train_losses(model, batch(two_boxes(), crowded(40)))
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert calls == {"focal": int(not use_hcrac), "box": int(not use_hcrar)}
    assert hasattr(model, "loss_normalizer") == (not (use_hcrac and use_hcrar))


def test_eatss_state_lives_in_hcral_atss():
    model = build(HCRAL)
    assert model.num_extra_priors == 3 and model.rank_iou == "anchor"
    assert model.assignment_info() == {"topk": 9, "eatss_l": 3}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", [[], ["model.head.aux=True"], ["model.eatss_rank_iou=pred"]])
def test_hcral_atss_training_finite(case, variant):
    model = build(HCRAL, *variant)
    assert isinstance(model, HCRALATSS)
    losses, scalars = train_losses(model, batch(*CASES[case]()))
    expected = {"loss_cls", "loss_box_reg", "loss_quality"} | ({"loss_box_reg_init"} if variant == ["model.head.aux=True"] else set())
    assert set(losses) == expected
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), (case, k, v)
    sum(losses.values()).backward()
    assert _grads_finite(model)
    assert "hcral/ghm_nonempty_bins" in scalars and scalars["hcral/ghm_nonempty_bins"] >= 1
    if case == "all_empty":
        # docs/methods.md#hcral-edge-cases: no positives -> reg / IoU losses 0 (in the graph), running mean not initialised
        assert losses["loss_box_reg"].item() == 0 and losses["loss_quality"].item() == 0
        assert model.hcrar.num_updates.item() == 0
    else:
        assert scalars["atss/eatss_extra_per_gt"] > 0 and scalars["hcral/hcrar_running_mean"] > 0
        assert model.hcrar.num_updates.item() == 1 and torch.count_nonzero(model.hcrac.ghm.acc) > 0


def test_num_classes_1_and_literal_rci_and_eval():
    model = build(HCRAL, "model.num_classes=1", "model.hcrac.rci_mode=literal")
    losses, _ = train_losses(model, batch(crowded(80, num_classes=1), empty()))
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(images(2))
    assert len(out) == 2 and all(len(o["instances"]) <= 100 for o in out)


def test_all_switches_off_is_exactly_atss():
    """EATSS, HCRA-C and HCRA-R off and centerness quality targets: the losses of ATSS."""
    off = build(
        HCRAL, "model.use_eatss=False", "model.use_hcrac=False", "model.use_hcrar=False",
        "model.quality_target=centerness",
    )
    assert off.hcrac is None and off.hcrar is None
    atss = build(ATSS_INSTANT)
    atss.load_state_dict(off.state_dict())
    inputs = batch(crowded(60), two_boxes())
    a, _ = train_losses(atss, inputs)
    b, scalars = train_losses(off, inputs)
    assert set(a) == set(b) and "atss/eatss_extra_per_gt" not in scalars
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_inference_is_atss_inference():
    """HCRAL changes training only: with ATSS's weights it detects exactly what ATSS detects (so the
    inference cost is ATSS's; benchmark ratios away from 1 are timing noise)."""
    # threshold 0: a random model scores below 0.05, and the test needs detections to compare
    hcral = build(HCRAL, "model.test_score_thresh=0.0")
    atss = build(ATSS_INSTANT, "model.test_score_thresh=0.0", seed=1)
    atss.load_state_dict(hcral.state_dict(), strict=False)  # HCRAL's extra state: loss statistics only
    hcral.eval(), atss.eval()
    with torch.no_grad():
        a, b = atss(images(2)), hcral(images(2))
    for x, y in zip(a, b):
        x, y = x["instances"], y["instances"]
        assert len(x) > 0
        torch.testing.assert_close(x.pred_boxes.tensor, y.pred_boxes.tensor)
        torch.testing.assert_close(x.scores, y.scores)
        assert torch.equal(x.pred_classes, y.pred_classes)


def test_each_component_changes_its_own_loss_only():
    inputs = batch(crowded(60), two_boxes())
    base, _ = train_losses(build(HCRAL, "model.use_eatss=False", "model.use_hcrac=False", "model.use_hcrar=False"), inputs)
    cls_only, _ = train_losses(build(HCRAL, "model.use_eatss=False", "model.use_hcrar=False"), inputs)
    reg_only, _ = train_losses(build(HCRAL, "model.use_eatss=False", "model.use_hcrac=False"), inputs)
    assert cls_only["loss_cls"].item() != base["loss_cls"].item()
    torch.testing.assert_close(cls_only["loss_box_reg"], base["loss_box_reg"])
    assert reg_only["loss_box_reg"].item() != base["loss_box_reg"].item()
    torch.testing.assert_close(reg_only["loss_cls"], base["loss_cls"])
    _, s_atss = train_losses(build(HCRAL, "model.use_eatss=False"), inputs)
    _, s_eatss = train_losses(build(HCRAL), inputs)
    assert s_eatss["num_pos_anchors"] >= s_atss["num_pos_anchors"] and s_eatss["atss/eatss_extra_per_gt"] > 0
    assert s_eatss["atss/eatss_extra_per_gt"] <= 3  # at most l = 3 per GT (pairs, before conflicts)


def test_quality_branch_target_is_the_iou_of_the_final_box():
    """HCRAL trains the quality branch on IoU: with the quality logits fixed at c, BCE = softplus(c)
    - c·t, so loss_quality = softplus(c) - c·mean(IoU of the positives' boxes)."""
    model = build(HCRAL)
    torch.nn.init.zeros_(model.head.ctrness.weight)
    torch.nn.init.constant_(model.head.ctrness.bias, 1.5)
    losses, _ = train_losses(model, batch(two_boxes()))
    mean_iou = (F.softplus(torch.tensor(1.5)) - losses["loss_quality"]) / 1.5
    assert 0.0 < mean_iou.item() < 1.0
    # the same model trained on centerness gets another mean target (the boxes are not centred)
    model.quality_target = "centerness"
    losses_c, _ = train_losses(model, batch(two_boxes()))
    assert not torch.isclose(losses_c["loss_quality"], losses["loss_quality"])


# ----------------------------------------------------------------------------- AUX (VFNet)
def test_star_offsets_layout_samples_the_box_points():
    """deform_conv2d with a one-hot kernel at point k returns the input at the k-th star point:
    (dy, dx) in {-t, 0, +b} x {-l, 0, +r}, row-major (torchvision = mmcv layout)."""
    H_, W_ = 12, 14
    ys, xs = torch.meshgrid(torch.arange(H_, dtype=torch.float32), torch.arange(W_, dtype=torch.float32), indexing="ij")
    feat = torch.stack([ys, xs])[None]  # channel 0 = row, channel 1 = column
    l, t, r, b = 2.0, 3.0, 1.0, 4.0  # integer distances: exact samples, no interpolation
    ltrb = torch.tensor([l, t, r, b]).view(1, 4, 1, 1).expand(1, 4, H_, W_)
    offsets = star_dcn_offsets(ltrb, 0.1)
    assert offsets.shape == (1, 18, H_, W_)
    i, j = 5, 6
    expected = [(dy, dx) for dy in (-t, 0.0, b) for dx in (-l, 0.0, r)]
    for k, (dy, dx) in enumerate(expected):
        weight = torch.zeros(2, 2, 3, 3)
        weight[0, 0, k // 3, k % 3] = 1.0
        weight[1, 1, k // 3, k % 3] = 1.0
        out = deform_conv2d(feat, offsets, weight, padding=(1, 1))
        assert out[0, :, i, j].tolist() == pytest.approx([i + dy, j + dx], abs=1e-5), k
    # only 10% of the gradient reaches the box
    x = ltrb.clone().requires_grad_(True)
    star_dcn_offsets(x, 0.1).sum().backward()
    assert torch.allclose(x.grad.abs().sum(dim=(0, 2, 3)), 0.1 * torch.tensor([3.0, 3, 3, 3]) * H_ * W_)


def test_aux_head_and_dcn_tower_run_on_cpu_and_load_plain_weights():
    model = build(HCRAL, "model.head.aux=True", "model.head.dcn_on_last_conv=True")
    head = model.head
    assert isinstance(head.cls_subnet[3], ModulatedDeformConv3x3) and isinstance(head.bbox_subnet[3], ModulatedDeformConv3x3)
    losses, _ = train_losses(model, batch(two_boxes(), crowded(30)))
    sum(losses.values()).backward()
    assert _grads_finite(model)
    assert head.aux.reg_dcn.weight.grad.abs().sum() > 0 and head.aux.cls_dcn.weight.grad.abs().sum() > 0
    # modulated DCN at init: zero offsets and mask σ(0) = .5 on every sample (the bias is added after,
    # as in mmcv), i.e. .5 x (conv without bias) + bias of the conv it replaced
    conv = torch.nn.Conv2d(8, 4, 3, padding=1)
    dcn = ModulatedDeformConv3x3.from_conv(conv)
    x = torch.randn(1, 8, 6, 7)
    b = conv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(dcn(x), 0.5 * (conv(x) - b) + b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- checkpoints
def test_atss_checkpoint_loads_into_hcral_with_nothing_missing(tmp_path):
    atss = build(ATSS_INSTANT, seed=1)
    hcral = build(HCRAL)
    result = hcral.load_state_dict(atss.state_dict(), strict=True)  # buffers start fresh, not "missing"
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert hcral.hcrar.num_updates.item() == 0 and torch.count_nonzero(hcral.hcrac.ghm.acc) == 0
    # through the checkpointer --eval-only uses (strict: any missing parameter is an error)
    path = tmp_path / "atss.pth"
    torch.save({"model": atss.state_dict()}, path)
    CheckedCheckpointer(build(HCRAL), strict=True).load(str(path))
    # with AUX only the new layers are missing
    aux = build(HCRAL, "model.head.aux=True")
    missing = aux.load_state_dict(atss.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("head.aux.") or k.startswith("hcrar_init.") for k in missing), missing
    assert any(k.startswith("head.aux.") for k in missing)


def test_hcral_state_is_in_the_checkpoint_and_resumes_exactly():
    inputs = batch(crowded(40), two_boxes())
    a = build(HCRAL)
    for seed in (5, 6):  # other batches: statistics that differ from this batch's own
        train_losses(a, batch(crowded(40, seed=seed), empty(), seed=seed))
    sd = a.state_dict()
    assert {"hcrac.ghm.acc", "hcrar.running_mean", "hcrar.num_updates"} <= set(sd)
    b = build(HCRAL)
    b.load_state_dict(sd)
    la, _ = train_losses(a, inputs)
    lb, _ = train_losses(b, inputs)
    for k in la:
        torch.testing.assert_close(la[k], lb[k])
    fresh = build(HCRAL)
    fresh.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("hcrac.", "hcrar."))})
    lf, _ = train_losses(fresh, inputs)
    # the control: without the state both losses differ
    assert lf["loss_cls"].item() != la["loss_cls"].item() and lf["loss_box_reg"].item() != la["loss_box_reg"].item()


# --------------------------------------------------------------------------- HCRALRetinaNet
@pytest.mark.parametrize("case", list(CASES))
def test_hcral_retinanet_training_finite(case):
    model = build(RETINA)
    assert isinstance(model, HCRALRetinaNet)
    losses, scalars = train_losses(model, batch(*CASES[case]()))
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), (case, k, v)
    sum(losses.values()).backward()
    assert _grads_finite(model)
    assert scalars["hcral/ghm_nonempty_bins"] >= 1
    if case == "all_empty":
        assert losses["loss_box_reg"].item() == 0


def test_hcral_retinanet_switches_off_is_retinanet():
    off = build(RETINA, "model.use_hcrac=False", "model.use_hcrar=False")
    retina = build(instant_config("retinanet_instant_test.py"))
    assert retina.load_state_dict(off.state_dict(), strict=True).missing_keys == []
    inputs = batch(crowded(50), two_boxes())
    a, _ = train_losses(retina, inputs)
    b, _ = train_losses(off, inputs)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    model = build(RETINA)
    model.eval()
    with torch.no_grad():
        assert len(model(images(1))[0]["instances"]) <= 100


# ---------------------------------------------------------------------------------- configs
def test_zoo_configs_build_what_they_say():
    for name in ("hcral_atss_R50_1x.py", "hcral_atss_R50_2x_ms.py", "hcral_atss_R101_2x_ms.py"):
        cfg = load_config(os.path.join(ROOT, "configs", name))
        assert cfg.model._target_ is HCRALATSS
        assert cfg.model.hcrac.theta == 5.0 and cfg.model.hcrar.gamma == 1.5 and cfg.model.eatss_num_extra == 3
    dcn = load_config(os.path.join(ROOT, "configs", "hcral_atss_R101_dcn_aux_2x_ms.py"))
    model = instantiate(dcn.model)
    assert model.has_aux and model.hcrar_init is not None
    res = model.backbone.bottom_up
    assert not isinstance(res.res2[0], DeformBottleneckBlock)
    assert all(isinstance(blk, DeformBottleneckBlock) for stage in (res.res3, res.res4, res.res5) for blk in stage)
    assert len(res.res4) == 23 and res.res3[0].deform_modulated
    assert isinstance(model.head, ATSSHead) and isinstance(model.head.cls_subnet[-3], ModulatedDeformConv3x3)
    ms = load_config(os.path.join(ROOT, "configs", "hcral_atss_R50_2x_ms.py"))
    resize = ms.dataloader.train.mapper.augmentations[0]
    assert tuple(resize.short_edge_length) == (480, 960) and resize.sample_style == "range"
    assert ms.train.max_iter == 180000 and ms.lr_multiplier.warmup_factor == 0.1
    retina = load_config(os.path.join(ROOT, "configs", "hcral_retinanet_R50_1x.py"))
    assert retina.model.hcrar.gamma == 1.2 and retina.model.box_reg_loss_weight == 2.5


def test_alwa_composed_with_hcral_atss():
    cfg = load_config(HCRAL)
    settings = load_config(os.path.join(ROOT, "configs", "hcral_atss_alwa_R50_1x.py")).model.alwa
    cfg.model = add_alwa(cfg.model, **settings)  # the tiny detector, ALWA's settings from the zoo config
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert isinstance(model, HCRALATSS) and hasattr(model, "alwa")
    losses, scalars = train_losses(model, batch(crowded(30), two_boxes()))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_quality"} and scalars["alwa_weight"] == 1.0


# ------------------------------------------------------------------------ train_net.py CLI
HCRAL_SCALARS = ("atss/pos_per_gt", "atss/eatss_extra_per_gt", "hcral/ghm_nonempty_bins", "hcral/hcrar_running_mean")


@pytest.mark.parametrize(
    "config,scalars",
    [("hcral_atss_instant_test.py", HCRAL_SCALARS), ("hcral_retinanet_instant_test.py", HCRAL_SCALARS[2:])],
)
def test_instant_test_trains_logs_and_evaluates(config, scalars, instant_run):
    run = instant_run(config)
    metrics = run.metrics()
    for key in scalars:
        assert any(key in m for m in metrics), (key, metrics[-1].keys())
    ckpt = torch.load(run.final, map_location="cpu", weights_only=False)["model"]
    assert ckpt["hcrar.num_updates"].item() > 0 and torch.count_nonzero(ckpt["hcrac.ghm.acc"]) > 0
    assert "copypaste: AP,AP50" in run.eval_only()
