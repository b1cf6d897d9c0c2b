"""ALWA in the Detectron2 layer (``alignment_det.modeling.alwa.with_alwa``, docs/methods.md#alwa):
the hook on RetinaNet, FCOS and Faster R-CNN (tiny), logging, checkpoints, resume mid-window
through train_net.py, two CPU processes, and the configs."""
import copy
import glob
import os
import statistics

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from detectron2.config import LazyCall as L  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402

from alignment_det.modeling.meta_arch import FCOS, FasterRCNN, HCRALATSS, RetinaNet, RetinaNetConf  # noqa: E402
from detectron2.modeling.backbone import ResNet  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from _cli import REPO, instant_config, train_net  # noqa: E402
from _config_checks import assert_differs_only_in  # noqa: E402
from conftest import MINI_SPLIT  # noqa: E402
from alignment_det.losses.alwa_weighting import ALWA  # noqa: E402
from alignment_det.checkpoint import CheckedCheckpointer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.alwa import add_alwa, get_alwa, with_alwa  # noqa: E402
from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402

ALWA_INSTANT = instant_config("retinanet_alwa_instant_test.py")
ALWA_KEYS = {"alwa.alpha", "alwa.cls_window", "alwa.reg_window", "alwa.window_fill"}


# ----------------------------------------------------------------------------- helpers
def config_path(rel):
    return os.path.join(REPO, rel)


def tiny_faster_rcnn_node(node):
    """Shrink the Faster R-CNN R50-FPN node in place: ResNet-18 with BN, 32-ch FPN, small heads."""
    node.backbone.bottom_up.stem.norm = "BN"
    node.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="BN")
    node.backbone.bottom_up.freeze_at = 0
    node.backbone.out_channels = 32
    node.proposal_generator.head.in_channels = 32
    node.proposal_generator.pre_nms_topk = (200, 100)
    node.proposal_generator.post_nms_topk = (50, 50)
    node.num_classes = 3  # roi_heads.num_classes follows it
    node.roi_heads.batch_size_per_image = 64
    node.roi_heads.box_head.input_shape = ShapeSpec(channels=32, height=7, width=7)
    node.roi_heads.box_head.fc_dims = [64]
    node.roi_heads.box_predictor.input_shape = ShapeSpec(channels=64)
    return node


def tiny_model(kind, *, period=3, **alwa):
    """(hooked tiny model, its config) built from the repository's ALWA configs."""
    def tiny_with_alwa_of(alwa_config, instant):
        """The tiny detector of ``instant`` with the ALWA settings of the zoo's ``alwa_config``."""
        settings = load_config(config_path(alwa_config), [f"model.alwa.period={period}"]).model.alwa
        cfg = load_config(instant_config(instant))
        cfg.model = add_alwa(cfg.model, **settings)
        return cfg

    if kind == "retinanet":
        cfg = load_config(ALWA_INSTANT, [f"model.alwa.period={period}"])
    elif kind == "fcos":
        cfg = tiny_with_alwa_of("configs/fcos_alwa_R50.py", "fcos_instant_test.py")
    elif kind == "retinanet_conf":  # composition with one of the project's own methods
        cfg = tiny_with_alwa_of("configs/retinanet_conf_alwa_R50.py", "retinanet_conf_instant_test.py")
    elif kind == "faster_rcnn":
        cfg = load_config(config_path("configs/faster_rcnn_alwa_R50.py"), [f"model.alwa.period={period}"])
        tiny_faster_rcnn_node(cfg.model)
    else:
        raise ValueError(kind)
    for k, v in alwa.items():
        cfg.model.alwa[k] = v
    torch.manual_seed(0)
    return instantiate(cfg.model), cfg


def batch(seed, *, n=2, h=128, w=160):
    """Detectron2 inputs: random images with 1-5 random boxes of 3 classes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(1, 6, (), generator=g))
        wh = torch.rand(k, 2, generator=g) * 60 + 16
        xy = torch.rand(k, 2, generator=g) * (torch.tensor([w, h]) - wh)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1))
        inst.gt_classes = torch.randint(0, 3, (k,), generator=g)
        img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8).float()
        out.append({"image": img, "instances": inst, "height": h, "width": w})
    return out


def capture_raw(model):
    """Record the detector's own (unweighted) loss dicts: a hook that runs before ALWA's."""
    seen = []
    model.register_forward_hook(
        lambda m, a, out: seen.append({k: float(v) for k, v in out.items()}) if isinstance(out, dict) else None,
        prepend=True,
    )
    return seen


def closed_form(cls_vals, reg_vals, alpha, variant, lambda0=1.0):
    """α after one window, written from docs/methods.md#alwa-weight-update (weighted statistics, ddof = 1)."""
    c = [x * alpha * lambda0 for x in cls_vals]
    r = [x * lambda0 for x in reg_vals]
    if variant == "ALWA_1":
        a, b = statistics.mean(c) + statistics.stdev(c), statistics.mean(r) + statistics.stdev(r)
    else:
        a, b = statistics.stdev(c), statistics.stdev(r)
    return b / a if a > b and a > 0 else alpha


KINDS = {
    # kind: (class, cls key, reg key, keys ALWA must leave alone)
    "retinanet": (RetinaNet, "loss_cls", "loss_box_reg", ()),
    "fcos": (FCOS, "loss_fcos_cls", "loss_fcos_loc", ("loss_fcos_ctr",)),
    "faster_rcnn": (FasterRCNN, "loss_rpn_cls", "loss_rpn_loc", ("loss_cls", "loss_box_reg")),
    "retinanet_conf": (RetinaNetConf, "loss_cls", "loss_box_reg", ("loss_obj",)),
}
# Batches fed to each kind so that the classification statistic exceeds the regression one
# within the 3-step window and α really updates: other images every step for the one-stage
# heads; for the RPN one fixed batch, because its sampled BCE starts at ≈ log 2 on every
# image (no spread) and only its decrease under SGD spreads it, while the RPN's L1 on a
# fixed batch barely moves.
FIXED_BATCH = {"retinanet": False, "fcos": False, "faster_rcnn": True, "retinanet_conf": False}


# ----------------------------------------------------------------------------- the hook
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("variant", ["ALWA_1", "ALWA_2"])
def test_hook_weights_losses_logs_and_updates_alpha_per_closed_form(kind, variant):
    cls_, ck, rk, untouched = KINDS[kind]
    model, _ = tiny_model(kind, period=3, variant=variant, lambda0=0.5)
    assert type(model) is cls_, "with_alwa must return the detector itself, not a wrapper"
    raw = capture_raw(model)
    model.train()
    # Train while feeding the hook (see FIXED_BATCH for why).
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    outs = []
    with EventStorage(0) as storage:
        for it in range(4):
            outs.append(model(batch(seed=0 if FIXED_BATCH[kind] else it)))
            opt.zero_grad()
            sum(outs[-1].values()).backward()
            opt.step()
            storage.step()
        logged = [v for v, _ in storage.history("alwa_weight").values()]
    alpha = get_alwa(model).weight
    expected = closed_form([d[ck] for d in raw[:3]], [d[rk] for d in raw[:3]], 1.0, variant, lambda0=0.5)
    assert alpha == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert alpha != 1.0, "alpha did not move: a <= b for these batches, the test would not test the update"
    # The weight applied (and logged) at each step: 1 for the first window, the new α after.
    assert logged == pytest.approx([1.0, 1.0, 1.0, alpha], rel=1e-12)
    for step, (out, d) in enumerate(zip(outs, raw)):
        applied = 1.0 if step < 3 else alpha
        assert set(out) == set(d)
        assert float(out[ck]) == pytest.approx(d[ck] * applied * 0.5, rel=1e-6)
        assert float(out[rk]) == pytest.approx(d[rk] * 0.5, rel=1e-6)
        for k in untouched:
            assert float(out[k]) == pytest.approx(d[k], rel=1e-6)
    # Gradients flowed through the weighted losses into the detector.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_eval_mode_passes_inference_through_and_keeps_state():
    model, _ = tiny_model("retinanet", period=3)
    model.train()
    with EventStorage(0):
        model(batch(seed=0))
    state = {k: v.clone() for k, v in get_alwa(model).state_dict().items()}
    model.eval()
    with EventStorage(0) as storage, torch.no_grad():
        out = model([{k: v for k, v in d.items() if k != "instances"} for d in batch(seed=1)])
        assert "alwa_weight" not in storage.histories()
    assert isinstance(out, list) and "instances" in out[0]
    for k, v in get_alwa(model).state_dict().items():
        assert torch.equal(v, state[k]), k


def test_deepcopy_hooks_its_own_controller():
    model, _ = tiny_model("retinanet", period=3)
    twin = copy.deepcopy(model).train()
    model.train()
    with EventStorage(0):
        twin(batch(seed=0))
    assert int(twin.alwa.window_fill) == 1
    assert int(model.alwa.window_fill) == 0, "the copy's hook updated the original's controller"


def test_misuse_is_reported():
    model, _ = tiny_model("retinanet")
    with pytest.raises(ValueError, match="already has"):
        with_alwa(model, cls_keys=["loss_cls"], reg_keys=["loss_box_reg"])
    with pytest.raises(KeyError, match="loss dict lacks"):
        with EventStorage(0):
            bad, _ = tiny_model("retinanet", cls_keys=["loss_rpn_cls"])
            bad.train()(batch(seed=0))


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_holds_alwa_state_and_baseline_loads_with_only_alwa_missing(tmp_path):
    model, _ = tiny_model("retinanet", period=3)
    model.train()
    with EventStorage(0):
        for it in range(4):  # one full window and one value of the next
            model(batch(seed=it))
    CheckedCheckpointer(model, str(tmp_path)).save("alwa")
    saved = torch.load(tmp_path / "alwa.pth", weights_only=False)["model"]
    assert ALWA_KEYS <= set(saved) and int(saved["alwa.window_fill"]) == 1
    assert float(saved["alwa.alpha"]) == model.alwa.weight

    fresh, _ = tiny_model("retinanet", period=3)
    CheckedCheckpointer(fresh, str(tmp_path), strict=True).load(str(tmp_path / "alwa.pth"))
    for k, v in model.alwa.state_dict().items():
        assert torch.equal(fresh.alwa.state_dict()[k], v), k

    # A baseline checkpoint (same detector without ALWA) loads with only alwa.* missing.
    torch.manual_seed(0)
    base = instantiate(load_config(instant_config("retinanet_instant_test.py")).model)
    CheckedCheckpointer(base, str(tmp_path)).save("base")
    target, _ = tiny_model("retinanet", period=3)
    CheckedCheckpointer(target, str(tmp_path)).load(str(tmp_path / "base.pth"))  # training's non-strict load
    sd_base, sd_target = base.state_dict(), target.state_dict()
    assert set(sd_target) - set(sd_base) == ALWA_KEYS and set(sd_base) <= set(sd_target)
    for k, v in sd_base.items():
        assert torch.equal(sd_target[k], v), k
    assert target.alwa.weight == 1.0 and int(target.alwa.window_fill) == 0


def test_baseline_checkpoint_incompatible_keys_are_exactly_alwa(tmp_path):
    torch.manual_seed(0)
    base = instantiate(load_config(instant_config("retinanet_instant_test.py")).model)
    target, _ = tiny_model("retinanet")
    result = target.load_state_dict(base.state_dict(), strict=False)
    assert set(result.missing_keys) == ALWA_KEYS and not result.unexpected_keys


# ----------------------------------------------------------------------------- two processes
def _ddp_worker(rank, world, init_file, out_dir, syncs):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for sync in syncs:  # one pair of processes for both settings: their start-up is most of the cost
            model, _ = tiny_model("retinanet", period=3, sync=sync)
            raw = capture_raw(model)
            ddp = DistributedDataParallel(model.train(), device_ids=None, broadcast_buffers=False)
            opt = torch.optim.SGD(ddp.parameters(), lr=0.005)
            alphas = []
            with EventStorage(0) as storage:
                for it in range(5):
                    losses = ddp(batch(seed=1000 * rank + it))  # every rank sees other images
                    opt.zero_grad()
                    sum(losses.values()).backward()
                    opt.step()
                    alphas.append(model.alwa.weight)
                    storage.step()
                logged = [v for v, _ in storage.history("alwa_weight").values()]
            torch.save(
                {"alphas": alphas, "raw": raw, "logged": logged, "state": model.alwa.state_dict()},
                os.path.join(out_dir, f"rank{rank}_sync{sync}.pth"),
            )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """{sync: [rank 0 result, rank 1 result]} of 5 DDP steps of the tiny ALWA RetinaNet, with the
    windows all-reduced (sync=True) and per rank (False)."""
    out = tmp_path_factory.mktemp("alwa_ddp")
    syncs = (True, False)
    mp.spawn(_ddp_worker, args=(2, str(out / "init"), str(out), syncs), nprocs=2, join=True)
    return {sync: [torch.load(out / f"rank{r}_sync{sync}.pth", weights_only=False) for r in range(2)] for sync in syncs}


def test_two_processes_all_reduce_the_windows_so_every_rank_holds_the_same_alpha(two_rank_runs):
    r0, r1 = two_rank_runs[True]
    assert r0["alphas"] == r1["alphas"] and r0["logged"] == r1["logged"]
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # The shared window is the mean over ranks of the per-rank values (α = 1 in window 1).
    mean = lambda key, its: [(r0["raw"][i][key] + r1["raw"][i][key]) / 2 for i in its]  # noqa: E731
    alpha = closed_form(mean("loss_cls", range(3)), mean("loss_box_reg", range(3)), 1.0, "ALWA_2")
    assert r0["alphas"][2] == pytest.approx(alpha, rel=1e-9)
    assert alpha != 1.0, "alpha did not move, equality of the ranks would be trivial"
    assert int(r0["state"]["window_fill"]) == 2
    expected_cls = [v * alpha for v in mean("loss_cls", (3, 4))]
    assert r0["state"]["cls_window"][:2].tolist() == pytest.approx(expected_cls, rel=1e-6)


def test_two_processes_without_sync_diverge(two_rank_runs):
    """Control for the test above: per-rank windows (the official code) give per-rank α."""
    r0, r1 = two_rank_runs[False]
    assert r0["alphas"][2] == pytest.approx(
        closed_form([d["loss_cls"] for d in r0["raw"][:3]], [d["loss_box_reg"] for d in r0["raw"][:3]], 1.0, "ALWA_2"),
        rel=1e-9,
    )
    assert r0["alphas"] != r1["alphas"]


def test_train_net_two_processes_checkpoints_alwa_state(two_process_run):
    # The shared two-process run: ALWA instant test, period 4, 10 iterations.
    assert two_process_run.config == ALWA_INSTANT
    out = two_process_run.output
    logged = {m["iteration"]: m["alwa_weight"] for m in read_metric_rows(out) if "alwa_weight" in m}
    assert sorted(logged) == list(range(10)), "alwa_weight must be logged every iteration"
    final = torch.load(out / "model_final.pth", weights_only=False)["model"]
    assert ALWA_KEYS <= set(final), "alwa.* (not module.alwa.*) must be in the checkpoint"
    # Updates after iterations 3 and 7; iterations 8-9 applied (and logged) the α of the
    # second update, which is still the checkpoint's α; two values wait in the window.
    assert float(final["alwa.alpha"]) == logged[9] == logged[8]
    assert int(final["alwa.window_fill"]) == 2


# ----------------------------------------------------------------------------- resume
DETERMINISTIC_CONFIG = '''
"""The ALWA instant test made step-by-step reproducible across --resume (test only).

Two things outside ALWA differ after a Detectron2 resume and are pinned: the data
stream restarts (so every iteration gets the same 4 images here), and TorchScript's first
call differs by ~1 ulp (the test runs with PYTORCH_JIT=0). RetinaNet's EMA loss
normaliser travels in the trainer state of the checkpoint (alignment_det.engine.trainer).
"""
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.data import transforms as T
from detectron2.data.samplers import TrainingSampler

_cfg = LazyConfig.load({path!r})
optimizer, lr_multiplier, train, dataloader = _cfg.optimizer, _cfg.lr_multiplier, _cfg.train, _cfg.dataloader
model = _cfg.model
dataloader.train.sampler = L(TrainingSampler)(size=4, shuffle=False)
dataloader.train.aspect_ratio_grouping = False
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
model.alwa.period = 4
# ALWA_1 on raw statistics: the tiny RetinaNet's raw cls loss (mean ≈ 1) stays above its
# box loss (≈ 0.7), so α = b/a is re-estimated at every window and the update from the
# window that spans the checkpoint is visible in the sequence.
model.alwa.variant = "ALWA_1"
model.alwa.stats_on = "raw"
train.max_iter = 14
train.checkpointer.period = 6
dataloader.test.dataset.names = {mini!r}  # the test reads weights, not AP
'''


@pytest.fixture(scope="module", autouse=True)
def _subprocess_env():
    with pytest.MonkeyPatch.context() as mp_:
        # TorchScript's profiling executor runs a scripted function (fvcore's focal and
        # smooth-L1 losses) unoptimised on its first call in a process and optimised after:
        # a resumed process's first step then differs from the uninterrupted run's by ~1 ulp
        # in some gradients, which training amplifies. Without TorchScript both are exact.
        mp_.setenv("PYTORCH_JIT", "0")
        yield


@pytest.fixture(scope="module")
def fixed_batch_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("alwa_cfg") / "alwa_fixed_batch.py"
    path.write_text(DETERMINISTIC_CONFIG.format(path=ALWA_INSTANT, mini=MINI_SPLIT))
    return str(path)


@pytest.fixture(scope="module")
def uninterrupted(fixed_batch_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("alwa_full")
    train_net("--config-file", fixed_batch_config, f"train.output_dir={out}")
    return out


def _resume_from(full, run_dir, config, *, drop_windows=False):
    """Stop ``full`` after iteration 5 (a directory holding only that checkpoint) and --resume it."""
    ckpt = torch.load(full / "model_0000005.pth", weights_only=False)
    if drop_windows:  # what a controller with non-persistent windows would resume with
        for k in ("alwa.cls_window", "alwa.reg_window", "alwa.window_fill"):
            ckpt["model"][k].zero_()
    run_dir.mkdir()
    torch.save(ckpt, run_dir / "model_0000005.pth")
    (run_dir / "last_checkpoint").write_text("model_0000005.pth")
    proc = train_net("--config-file", config, "--resume", f"train.output_dir={run_dir}")
    assert "Starting training from iteration 6" in proc.stdout + proc.stderr
    return {m["iteration"]: m["alwa_weight"] for m in read_metric_rows(run_dir) if "alwa_weight" in m}


def test_resume_mid_window_reproduces_the_uninterrupted_weights(fixed_batch_config, uninterrupted, tmp_path):
    full = uninterrupted
    # Checkpoint after iteration 5 = 6 steps with C = 4: two values wait in the window.
    mid = torch.load(full / "model_0000005.pth", weights_only=False)["model"]
    assert int(mid["alwa.window_fill"]) == 2 and float(mid["alwa.cls_window"][1]) > 0
    w_full = {m["iteration"]: m["alwa_weight"] for m in read_metric_rows(full) if "alwa_weight" in m}
    assert sorted(w_full) == list(range(14))
    # Updates after iterations 3, 7, 11; the one after 7 comes from the window 4-7, which
    # spans the checkpoint, and must have changed α for the comparison to mean anything.
    assert w_full[3] != w_full[4] != w_full[8] != w_full[12]

    w_res = _resume_from(full, tmp_path / "resumed", fixed_batch_config)
    assert sorted(w_res) == list(range(6, 14))
    assert [w_res[i] for i in range(6, 14)] == [w_full[i] for i in range(6, 14)]
    a = torch.load(full / "model_final.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=False)["model"]
    assert int(a["alwa.window_fill"]) == 2  # the final checkpoint is mid-window too
    for k in ALWA_KEYS:
        assert torch.equal(a[k], b[k]), k

    # Control: the same resume without the partial windows gives other weights.
    w_lost = _resume_from(full, tmp_path / "lost", fixed_batch_config, drop_windows=True)
    assert [w_lost[i] for i in range(8, 14)] != pytest.approx([w_full[i] for i in range(8, 14)], rel=1e-3)


def test_eval_only_loads_the_alwa_checkpoint_strictly(fixed_batch_config, uninterrupted):
    proc = train_net(
        "--config-file", fixed_batch_config, "--eval-only",
        f"train.output_dir={uninterrupted}", f"train.init_checkpoint={uninterrupted / 'model_final.pth'}",
    )
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- configs
ALWA_CONFIGS = {
    # path: (detector class, cls keys, reg keys, variant, period, box loss or None)
    "configs/retinanet_alwa_R50.py": (RetinaNet, ["loss_cls"], ["loss_box_reg"], "ALWA_2", 100, "smooth_l1"),
    "configs/fcos_alwa_R50.py": (FCOS, ["loss_fcos_cls"], ["loss_fcos_loc"], "ALWA_2", 100, None),
    "configs/faster_rcnn_alwa_R50.py": (FasterRCNN, ["loss_rpn_cls"], ["loss_rpn_loc"], "ALWA_2", 100, None),
    "configs/retinanet_conf_alwa_R50.py": (RetinaNetConf, ["loss_cls"], ["loss_box_reg"], "ALWA_2", 100, "smooth_l1"),
    "configs/quick_schedules/retinanet_alwa_instant_test.py": (RetinaNet, ["loss_cls"], ["loss_box_reg"], "ALWA_2", 10, "smooth_l1"),
    "configs/hcral_atss_alwa_R50_1x.py": (HCRALATSS, ["loss_cls"], ["loss_box_reg"], "ALWA_2", 100, None),
}


@pytest.mark.parametrize("path", list(ALWA_CONFIGS))
def test_alwa_config_builds_the_hooked_detector(path):
    # Loading, saving and reloading every config is tests/test_configs.py's.
    cls_, ck, rk, variant, period, box_loss = ALWA_CONFIGS[path]
    again = load_config(config_path(path))
    # add_alwa writes every setting into the node (those a config leaves out at their defaults).
    assert set(again.model.alwa) == {
        "cls_keys", "reg_keys", "variant", "lambda0", "period", "stats_on", "sync", "alpha_init", "adapt"}
    model = instantiate(again.model)
    assert type(model) is cls_ and isinstance(model.alwa, ALWA)
    a = model.alwa
    assert (list(a.cls_keys), list(a.reg_keys), a.variant, a.period, a.lambda0, a.stats_on, a.sync, a.weight, a.adapt) == (
        ck, rk, variant, period, 1.0, "weighted", True, 1.0, True)
    if box_loss:
        assert model.box_reg_loss_type == box_loss and model.smooth_l1_beta == 0.0  # L1, as the official code
    assert ALWA_KEYS <= set(model.state_dict())


FIXED_WEIGHT_CONFIG = config_path("projects/ALWA/configs/retinanet_fixed_cls_weight.py")
CHESS_FIXED_WEIGHT_CONFIG = config_path("projects/ALWA/configs/retinanet_fixed_cls_weight_044.py")
PROJECT_CONFIGS = sorted(
    set(glob.glob(config_path("projects/ALWA/configs/*.py"))) - {FIXED_WEIGHT_CONFIG, CHESS_FIXED_WEIGHT_CONFIG})


def test_fixed_weight_control_differs_from_alwa_only_in_its_two_keys():
    control = load_config(FIXED_WEIGHT_CONFIG)
    assert_differs_only_in(control, load_config(config_path("configs/retinanet_alwa_R50.py")), {
        "model.alwa.alpha_init": (0.58, 1.0),
        "model.alwa.adapt": (False, True),
        "train.output_dir": ("./output/retinanet_fixed_cls_weight", "./output/retinanet_alwa_R50"),
    })
    model = instantiate(control.model).train()
    assert model.alwa.weight == 0.58 and model.alwa.adapt is False


def test_chess_fixed_weight_control_changes_only_the_weight():
    assert_differs_only_in(load_config(CHESS_FIXED_WEIGHT_CONFIG), load_config(FIXED_WEIGHT_CONFIG), {
        "model.alwa.alpha_init": (0.44, 0.58),
        "train.output_dir": ("./output/retinanet_fixed_cls_weight_044", "./output/retinanet_fixed_cls_weight"),
    })


@pytest.mark.parametrize("path", PROJECT_CONFIGS, ids=os.path.basename)
def test_table2_configs_set_variant_and_box_loss(path):
    name = os.path.basename(path)
    again = load_config(path)
    detector = again.model  # ALWA configs keep the detector's keys where the baseline has them
    if "alwa" in name:
        assert again.model.alwa.variant == ("ALWA_1" if "alwa1" in name else "ALWA_2")
    else:
        assert "alwa" not in again.model and "build_with_alwa" not in str(again.model._target_)
    loss = name.rsplit("_", 1)[1][:-3]
    got = (detector.get("box_reg_loss_type", "smooth_l1"), detector.get("smooth_l1_beta", 0.0))
    assert got == {"l1": ("smooth_l1", 0.0), "smoothl1": ("smooth_l1", 0.11), "ciou": ("ciou", 0.0)}[loss]
    assert again.train.output_dir.endswith(name[:-3])
