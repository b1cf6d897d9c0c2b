"""ALWA controller (docs/methods.md#alwa). CPU, no Detectron2.

Hand-computed reference windows used below (C = 3, sample std with ddof = 1):
  X = [1, 2, 3]:      mean 2,   deviations (-1, 0, 1),      Σd² = 2,   var = 2/2 = 1,      std = 1
  Y = [1, 1.5, 2]:    mean 1.5, deviations (-.5, 0, .5),    Σd² = .5,  var = .5/2 = .25,   std = .5
  Z = [2, 3.02, 4.04]: mean 3.02, deviations (-1.02, 0, 1.02), var = 1.02²,            std = 1.02
"""
import io
import json
import math
import socket

import pytest
import torch

from alignment_det.losses.alwa_weighting import ALWA

CLS, REG = "loss_cls", "loss_box_reg"


def make(**kw):
    kw.setdefault("cls_keys", (CLS,))
    kw.setdefault("reg_keys", (REG,))
    kw.setdefault("period", 3)
    return ALWA(**kw).train()


def feed(ctrl, cls_vals, reg_vals):
    """Feed a stream of raw (cls, reg) values; return alpha after each call."""
    alphas = []
    for c, r in zip(cls_vals, reg_vals):
        ctrl({CLS: torch.tensor(float(c)), REG: torch.tensor(float(r))})
        alphas.append(ctrl.weight)
    return alphas


# ----------------------------------------------------------------------------- closed form
def test_alwa2_closed_form_after_C_steps():
    ctrl = make()
    alphas = feed(ctrl, [1, 2, 3], [1, 1.5, 2])
    # Windows hold weighted = raw values (alpha = 1): a = std(X) = 1, b = std(Y) = 0.5 -> alpha = 0.5.
    assert alphas[:2] == [1.0, 1.0]  # no update before the window is full
    assert alphas[2] == pytest.approx(0.5, abs=1e-12)
    assert int(ctrl.window_fill) == 0  # windows cleared
    assert torch.count_nonzero(ctrl.cls_window) == 0 and torch.count_nonzero(ctrl.reg_window) == 0
    assert ctrl.last_window_stats["a"] == pytest.approx(1.0)
    assert ctrl.last_window_stats["b"] == pytest.approx(0.5)


def test_new_alpha_applies_from_next_iteration():
    ctrl = make(lambda0=0.5)
    outs = []
    for c, r in zip([1, 2, 3, 10], [1, 1.5, 2, 4]):
        outs.append(ctrl({CLS: torch.tensor(float(c)), REG: torch.tensor(float(r))}))
    # Third call fills the window; its own loss still uses alpha = 1: 3 * 1 * 0.5.
    assert outs[2][CLS].item() == pytest.approx(1.5)
    # Weighted windows are both scaled by lambda0 = 0.5, so alpha = 0.5/1 = 0.5 still;
    # fourth call: 10 * alpha(0.5) * lambda0(0.5) = 2.5; reg: 4 * 0.5 = 2.
    assert outs[3][CLS].item() == pytest.approx(2.5)
    assert outs[3][REG].item() == pytest.approx(2.0)
    assert ctrl.cls_weight == pytest.approx(0.25)


@pytest.mark.parametrize("variant", ["ALWA_1", "ALWA_2"])
def test_unchanged_when_cls_statistic_not_larger(variant):
    ctrl = make(variant=variant)
    # Equal windows: a == b (not a > b) -> unchanged.
    assert feed(ctrl, [1, 2, 3], [1, 2, 3])[-1] == 1.0
    # cls spread and mean both smaller than reg: a < b -> unchanged.
    assert feed(ctrl, [1, 1.5, 2], [1, 2, 3])[-1] == 1.0
    # Sanity: the same controller does update when a > b (so the checks above could fail).
    assert feed(ctrl, [1, 2, 3], [1, 1.5, 2])[-1] < 1.0


def test_no_update_when_a_is_not_positive():
    # Only reachable with negative losses (ALWA_1): cls constant -1 -> a = -1 + 0 = -1;
    # reg [-4, -3, -2]: mean -3, std 1 -> b = -2. a > b but a <= 0 -> no update (b/a would be 2).
    ctrl = make(variant="ALWA_1")
    assert feed(ctrl, [-1, -1, -1], [-4, -3, -2])[-1] == 1.0
    assert ctrl.last_window_stats["a"] == pytest.approx(-1.0)
    assert ctrl.last_window_stats["b"] == pytest.approx(-2.0)


def test_alwa1_vs_alwa2():
    # Same stream X/Y: ALWA_1 a = 2 + 1 = 3, b = 1.5 + .5 = 2 -> 2/3; ALWA_2 -> .5/1 = .5.
    a1, a2 = make(variant="ALWA_1"), make(variant="ALWA_2")
    assert feed(a1, [1, 2, 3], [1, 1.5, 2])[-1] == pytest.approx(2 / 3, abs=1e-12)
    assert feed(a2, [1, 2, 3], [1, 1.5, 2])[-1] == pytest.approx(0.5, abs=1e-12)
    # cls [4, 4.5, 5]: mean 4.5, std .5; reg [0, 1, 2]: mean 1, std 1.
    # ALWA_2: a = .5 < b = 1 -> unchanged; ALWA_1: a = 5 > b = 2 -> 2/5.
    b1, b2 = make(variant="ALWA_1"), make(variant="ALWA_2")
    assert feed(b1, [4, 4.5, 5], [0, 1, 2])[-1] == pytest.approx(0.4, abs=1e-12)
    assert feed(b2, [4, 4.5, 5], [0, 1, 2])[-1] == 1.0


def test_alpha_init_weights_from_the_first_call_and_enters_weighted_statistics():
    # alpha_init .5, lambda0 2: the first call's cls loss is 3 * .5 * 2 = 3, reg 2 * 2 = 4.
    ctrl = make(alpha_init=0.5, lambda0=2.0)
    assert ctrl.weight == 0.5 and ctrl.cls_weight == pytest.approx(1.0)
    out = ctrl({CLS: torch.tensor(3.0), REG: torch.tensor(2.0)})
    assert out[CLS].item() == pytest.approx(3.0) and out[REG].item() == pytest.approx(4.0)
    # Weighted windows (λ0 1): cls .5·[3, 4, 5] -> std .5 (1 if alpha_init were left out);
    # reg [2, 2.125, 2.25] -> std .125; a > b -> alpha = .125 / .5 = .25.
    ctrl = make(alpha_init=0.5)
    assert feed(ctrl, [3, 4, 5], [2, 2.125, 2.25])[-1] == pytest.approx(0.25)
    assert ctrl.last_window_stats["std_cls"] == pytest.approx(0.5)
    assert ctrl.last_window_stats["std_reg"] == pytest.approx(0.125)


def test_adapt_false_keeps_alpha_init_and_fills_no_window():
    # The stream that sends an adapting controller from 1 to .5 (X / Y) twice over.
    fixed = make(alpha_init=0.58, adapt=False)
    assert feed(fixed, [1, 2, 3] * 2, [1, 1.5, 2] * 2) == [0.58] * 6
    assert int(fixed.window_fill) == 0 and fixed.last_window_stats is None
    out = fixed({CLS: torch.tensor(2.0), REG: torch.tensor(3.0)})
    assert out[CLS].item() == pytest.approx(1.16) and out[REG].item() == pytest.approx(3.0)
    assert feed(make(alpha_init=0.58), [1, 2, 3], [1, 1.5, 2])[-1] != 0.58  # adapting: updated


def test_weighted_vs_raw_statistics_and_oscillation():
    # Window 1 (alpha = 1, weighted == raw): X / Y -> alpha = .5 in both modes.
    # Window 2: raw cls Z (std 1.02), raw reg Y (std .5).
    #   raw:      a = 1.02, b = .5 -> alpha = .5/1.02
    #   weighted: cls values are .5*Z, std .51 > .5 -> alpha = .5/.51 (~0.98): jumps back to ~1 (docs/methods.md#alwa-choices)
    cls = [1, 2, 3, 2, 3.02, 4.04]
    reg = [1, 1.5, 2, 1, 1.5, 2]
    w, r = make(stats_on="weighted"), make(stats_on="raw")
    aw, ar = feed(w, cls, reg), feed(r, cls, reg)
    assert aw[2] == pytest.approx(0.5) and ar[2] == pytest.approx(0.5)
    assert ar[5] == pytest.approx(0.5 / 1.02, rel=1e-6)  # float32 inputs (3.02, 4.04 are not exact)
    assert aw[5] == pytest.approx(0.5 / 0.51, rel=1e-6)
    assert w.last_window_stats["std_cls"] == pytest.approx(0.51, rel=1e-6)
    assert r.last_window_stats["std_cls"] == pytest.approx(1.02, rel=1e-6)


def test_multiple_keys_are_summed_and_others_pass_through():
    ctrl = ALWA(cls_keys=("a_cls", "b_cls"), reg_keys=("loc",), period=3).train()
    ctr = torch.tensor(7.0)
    # a_cls + b_cls = X, loc = Y -> alpha = .5 (window holds the sums).
    for (ca, cb), r in zip([(0.25, 0.75), (1.5, 0.5), (1.0, 2.0)], [1, 1.5, 2]):
        out = ctrl({"a_cls": torch.tensor(ca), "b_cls": torch.tensor(cb), "loc": torch.tensor(float(r)), "ctr": ctr})
        assert out["ctr"] is ctr
    assert ctrl.weight == pytest.approx(0.5)


# ----------------------------------------------------------------------------- edge cases
def test_non_finite_values_skipped():
    ctrl = make()
    nan, inf = float("nan"), float("inf")
    cls = [1, nan, 2, 9, 3]
    reg = [1, 1, 1.5, inf, 2]
    alphas = []
    for i, (c, r) in enumerate(zip(cls, reg)):
        out = ctrl({CLS: torch.tensor(float(c)), REG: torch.tensor(float(r))})
        alphas.append(ctrl.weight)
        if i == 1:
            assert int(ctrl.window_fill) == 1  # the NaN step did not advance the window
            assert math.isnan(out[CLS].item())  # the loss itself is returned, weighted, unchanged in kind
    # Finite steps are X / Y -> .5; had 9 (or NaN) entered, the value would differ.
    assert alphas[-1] == pytest.approx(0.5)
    assert alphas[-2] == 1.0
    assert ctrl.num_skipped == 2


def test_zero_positive_batch_enters_window():
    ctrl = make()
    # reg [0, 1, 2]: std 1; cls [1, 3, 5]: std 2 -> alpha = .5. A skipped 0 would leave the window unfilled.
    assert feed(ctrl, [1, 3, 5], [0, 1, 2])[-1] == pytest.approx(0.5)


@pytest.mark.parametrize("period", [1, 0, -3, 2.5, True])
def test_period_below_two_rejected(period):
    with pytest.raises(ValueError, match="period"):
        ALWA(cls_keys=CLS, reg_keys=REG, period=period)


def test_period_two_allowed():
    # C = 2: cls [1, 3] std sqrt(2); reg [1, 2] std sqrt(.5) -> alpha = sqrt(.5)/sqrt(2) = .5.
    assert feed(make(period=2), [1, 3], [1, 2])[-1] == pytest.approx(0.5)


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="variant"):
        ALWA(cls_keys=CLS, reg_keys=REG, variant="ALWA_3")
    with pytest.raises(ValueError, match="stats_on"):
        ALWA(cls_keys=CLS, reg_keys=REG, stats_on="ema")
    with pytest.raises(ValueError, match="both"):
        ALWA(cls_keys=(CLS,), reg_keys=(CLS, REG))
    with pytest.raises(ValueError, match="lambda0"):
        ALWA(cls_keys=CLS, reg_keys=REG, lambda0=0.0)
    with pytest.raises(ValueError, match="at least one"):
        ALWA(cls_keys=(), reg_keys=REG)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha_init"):
            ALWA(cls_keys=CLS, reg_keys=REG, alpha_init=bad)


def test_missing_key_error_names_expected_and_available():
    ctrl = make()
    with pytest.raises(KeyError) as ei:
        ctrl({"loss_fcos_cls": torch.tensor(1.0), REG: torch.tensor(1.0)})
    msg = str(ei.value)
    assert CLS in msg and REG in msg and "loss_fcos_cls" in msg
    assert int(ctrl.window_fill) == 0


def test_non_scalar_loss_rejected():
    with pytest.raises(ValueError, match="one-element"):
        make()({CLS: torch.ones(2), REG: torch.tensor(1.0)})


def test_eval_mode_weights_without_updating():
    ctrl = make()
    feed(ctrl, [1, 2, 3, 4], [1, 1.5, 2, 1])  # alpha = .5, one value in the window
    before = {k: v.clone() for k, v in ctrl.state_dict().items()}
    ctrl.eval()
    out = ctrl({CLS: torch.tensor(4.0), REG: torch.tensor(3.0)})
    assert out[CLS].item() == pytest.approx(2.0) and out[REG].item() == pytest.approx(3.0)
    for k, v in ctrl.state_dict().items():
        assert torch.equal(v, before[k]), k


# ----------------------------------------------------------------------------- gradients
def test_losses_keep_gradient_alpha_has_none():
    ctrl = make()
    feed(ctrl, [1, 2, 3], [1, 1.5, 2])  # alpha = .5
    p = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = ctrl({CLS: (p ** 2).sum(), REG: p.sum()})
    assert out[CLS].requires_grad and out[REG].requires_grad
    assert not ctrl.alpha.requires_grad and ctrl.alpha.grad_fn is None
    (out[CLS] + out[REG]).backward()
    # d/dp [.5 * Σp² + Σp] = p + 1
    assert torch.allclose(p.grad, p.detach() + 1)
    assert ctrl.alpha.grad is None
    assert list(ctrl.parameters()) == []


# ----------------------------------------------------------------------------- checkpointing
def test_state_dict_round_trip():
    ctrl = make(variant="ALWA_1")
    feed(ctrl, [1, 2, 3, 7, 8], [1, 1.5, 2, 0.5, 0.25])  # alpha = 2/3, window holds 2 values
    sd = ctrl.state_dict()
    assert set(sd) == {"alpha", "cls_window", "reg_window", "window_fill"}
    fresh = make(variant="ALWA_1")
    assert fresh.weight == 1.0
    fresh.load_state_dict(sd)
    assert fresh.weight == pytest.approx(2 / 3)
    assert int(fresh.window_fill) == 2
    # weighted values: 7 * 2/3, 8 * 2/3
    assert torch.allclose(fresh.cls_window[:2], torch.tensor([14 / 3, 16 / 3], dtype=torch.float64))
    assert torch.equal(fresh.reg_window[:2], torch.tensor([0.5, 0.25], dtype=torch.float64))


def _stream(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    # cls loss with a spread that drifts, reg loss with a smaller spread: alpha changes often.
    cls = (2.0 + torch.randn(n, generator=g, dtype=torch.float64) * torch.linspace(0.3, 1.5, n, dtype=torch.float64)).abs()
    reg = (0.8 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)).abs()
    return cls.tolist(), reg.tolist()


@pytest.mark.parametrize("stats_on", ["weighted", "raw"])
def test_resume_mid_window_gives_identical_alpha_sequence(stats_on):
    C, n, k = 4, 30, 6  # stop after 6 steps: one update done, 2 values in the open window
    cls, reg = _stream(n)
    full = feed(make(period=C, stats_on=stats_on), cls, reg)
    assert len(set(full)) >= 3  # alpha really moves, so the comparison below is meaningful

    first = make(period=C, stats_on=stats_on)
    head = feed(first, cls[:k], reg[:k])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict()}, buf)
    buf.seek(0)
    resumed = make(period=C, stats_on=stats_on)
    resumed.load_state_dict(torch.load(buf)["model"])
    tail = feed(resumed, cls[k:], reg[k:])
    assert head + tail == full  # exact equality, not approx

    # Control: a restart without the checkpoint (alpha = 1, empty window) diverges.
    assert feed(make(period=C, stats_on=stats_on), cls[k:], reg[k:]) != full[k:]


# ----------------------------------------------------------------------------- DDP (gloo, CPU)
def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        # Per-rank raw values; their rank mean is X / Y of the module docstring.
        cls = [[0.0, 2.0, 4.0], [2.0, 2.0, 2.0]][rank]
        reg = [[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]][rank]
        synced = ALWA(cls_keys=CLS, reg_keys=REG, period=3, sync=True).train()
        local = ALWA(cls_keys=CLS, reg_keys=REG, period=3, sync=False).train()
        res = {"sync": feed(synced, cls, reg), "local": feed(local, cls, reg)}
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_ranks_share_alpha(tmp_path):
    import torch.multiprocessing as mp

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available in this torch build")
    world = 2
    mp.spawn(_ddp_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    # Averaged windows: cls [1, 2, 3] (std 1), reg [1, 1.5, 2] (std .5) -> alpha = .5 on both ranks.
    assert res[0]["sync"] == res[1]["sync"]
    assert res[0]["sync"][-1] == pytest.approx(0.5, abs=1e-12)
    # Without sync each rank uses its own values (official code): rank 0 cls std 2, reg std 0 -> 0/2 = 0;
    # rank 1 cls std 0 -> a = 0, no update -> 1.
    assert res[0]["local"][-1] == 0.0
    assert res[1]["local"][-1] == 1.0
