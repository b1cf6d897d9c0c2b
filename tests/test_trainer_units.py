"""Trainer pieces that need no training run: gradient clipping, CPU DDP wrapping, the
benchmark harness."""
import os
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from _cli import instant_config  # noqa: E402

from alignment_det.engine.trainer import (  # noqa: E402
    create_ddp_model,
    ema_state_dict,
    load_ema_state_dict,
    maybe_add_gradient_clipping,
)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


def _step_with_clip(clip_cfg, grads):
    params = [torch.nn.Parameter(torch.zeros(len(g))) for g in grads]
    opt = maybe_add_gradient_clipping(torch.optim.SGD(params, lr=1.0), clip_cfg)
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    opt.step()
    return [-p.detach() for p in params]  # with lr 1 the update is minus the clipped gradient


def test_full_model_clipping_bounds_the_global_norm():
    # grads (3, 4) and (12,) have global L2 norm 13; clipped to 0.1 they scale by 0.1 / 13.
    applied = _step_with_clip(dict(enabled=True, clip_type="full_model", clip_value=0.1), [[3.0, 4.0], [12.0]])
    assert torch.allclose(torch.cat(applied), torch.tensor([3.0, 4.0, 12.0]) * 0.1 / 13, atol=1e-6)


def test_value_clipping_and_disabled():
    applied = _step_with_clip(dict(enabled=True, clip_type="value", clip_value=0.5), [[3.0, -0.2]])
    assert applied[0].tolist() == pytest.approx([0.5, -0.2])
    applied = _step_with_clip(dict(enabled=False, clip_type="value", clip_value=0.5), [[3.0]])
    assert applied[0].tolist() == [3.0]


def test_unknown_clip_type_is_an_error():
    with pytest.raises(ValueError, match="clip_type"):
        _step_with_clip(dict(enabled=True, clip_type="l2", clip_value=1.0), [[1.0]])


def test_ddp_wrapping_is_a_no_op_in_one_process():
    model = torch.nn.Linear(2, 2)
    assert create_ddp_model(model, device="cpu", broadcast_buffers=False) is model


def test_benchmark_harness_times_both_configs_on_the_same_batches():
    from harness import report, synthetic_batch, time_configs

    a = synthetic_batch(batch_size=2, height=64, width=80, num_boxes=5, num_classes=3, seed=1)
    b = synthetic_batch(batch_size=2, height=64, width=80, num_boxes=5, num_classes=3, seed=1)
    assert torch.equal(a[1]["image"], b[1]["image"]) and torch.equal(a[1]["instances"].gt_boxes.tensor, b[1]["instances"].gt_boxes.tensor)
    boxes = a[0]["instances"].gt_boxes.tensor
    assert (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 64).all() and (boxes[:, :2] >= 0).all()

    cfg = instant_config("fcos_instant_test.py")
    timings = time_configs([cfg, cfg], names=("a", "b"), batch_size=1, height=96, width=128, num_boxes=3, iters=2, warmup=1)
    assert [t.name for t in timings] == ["a", "b"]
    assert all(len(t.train_s) == 2 and len(t.infer_s) == 2 and min(t.train_s + t.infer_s) > 0 for t in timings)
    table = report(timings)
    assert "| a |" in table and "| 1.000 |" in table.splitlines()[3]


def test_ema_normaliser_round_trips_through_the_trainer_state():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert ema_state_dict(model) == {}  # nothing set yet: nothing saved
    model[1].loss_normalizer = 12.5
    state = ema_state_dict(model)
    assert state == {"1": {"loss_normalizer": 12.5}}
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    load_ema_state_dict(fresh, state)
    assert fresh[1].loss_normalizer == 12.5 and not hasattr(fresh[0], "loss_normalizer")
