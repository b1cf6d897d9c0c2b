"""Mixed precision: every meta-architecture of the zoo (baselines included) trains a step under CPU
autocast in bf16 and fp16, with losses close to fp32's at the same weights and finite gradients;
the trainer's ``train.amp`` settings.

Tolerance: each loss term within 2 % (relative) + 1e-3 (absolute) of fp32. Assignment and losses
run in fp32 (``Float32Training``), so only the backbone and head see half precision; the measured
gap on these tiny models is at most 0.2 % (bf16) of the total loss.
"""
import copy
import glob
import os

import pytest

from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from _inputs import gt_instances, random_batch  # noqa: E402
from alignment_det.engine.amp import resolve_amp_dtype  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.precision import Float32Training  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANT = sorted(glob.glob(os.path.join(REPO, "configs", "quick_schedules", "*_instant_test.py")))
RTOL, ATOL = 0.02, 1e-3


def _losses(model, batch, dtype):
    """Loss dict (floats) and whether every gradient is finite, for one step in ``dtype``."""
    model = copy.deepcopy(model)  # same weights and state (ALWA statistics, BN) for every dtype
    with EventStorage(0):
        if dtype is None:
            losses = model(batch)
        else:
            with torch.autocast("cpu", dtype=dtype):
                losses = model(batch)
        sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    return {k: float(v) for k, v in losses.items()}, all(bool(torch.isfinite(g).all()) for g in grads)


# fp16 steps at half the image side: CPU convolutions have no fp16 kernel here and fall back to
# the reference implementation (about 10x the time of fp32, 9 s a step at full size); bf16 keeps
# the full size, where Faster R-CNN's sampled proposals need it. Each dtype is compared with fp32
# on its own input.
BATCHES = {
    "full": lambda: random_batch(
        gt_instances([[10, 20, 60, 90], [70, 30, 150, 120]], [0, 1]), gt_instances([[5, 5, 40, 50]], [2])
    ),
    "half": lambda: random_batch(
        gt_instances([[5, 10, 30, 45], [35, 15, 75, 60]], [0, 1]), gt_instances([[3, 3, 20, 25]], [2]), size=(64, 80)
    ),
}
BATCH_OF = {torch.bfloat16: "full", torch.float16: "half"}


@pytest.fixture(scope="module", params=[os.path.basename(p) for p in INSTANT])
def model_and_fp32(request):
    """(model, {batch name: (batch, fp32 losses and gradients finite)})."""
    cfg = load_config(os.path.join(REPO, "configs", "quick_schedules", request.param))
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    batches = {name: make() for name, make in BATCHES.items()}
    return model, {name: (batch, _losses(model, batch, None)) for name, batch in batches.items()}


def test_instant_configs_cover_every_zoo_family():
    names = {os.path.basename(p).replace("_instant_test.py", "") for p in INSTANT}
    assert {"retinanet", "fcos", "atss", "mal", "retinanet_conf", "retinanet_alwa", "date", "hcral_atss",
            "hcral_retinanet", "faster_rcnn"} <= names


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_training_step_under_cpu_autocast(model_and_fp32, dtype):
    model, fp32_of = model_and_fp32
    batch, (fp32, fp32_finite) = fp32_of[BATCH_OF[dtype]]
    assert fp32_finite
    losses, finite = _losses(model, batch, dtype)
    assert set(losses) == set(fp32)
    for k, v in losses.items():
        assert torch.isfinite(torch.tensor(v)), (k, v)
        assert abs(v - fp32[k]) <= ATOL + RTOL * abs(fp32[k]), (k, v, fp32[k])
    assert finite, "a gradient is inf or NaN"


def test_dense_training_runs_in_fp32_with_autocast_off():
    """What reaches assignment and the losses under autocast: fp32 predictions, autocast off."""
    seen = {}

    class Base(torch.nn.Module):
        def forward_training(self, images, features, predictions, gt_instances, **kwargs):
            seen["dtypes"] = {p.dtype for level in predictions for p in level}
            seen["autocast"] = torch.is_autocast_enabled("cpu")
            seen["kwargs"] = kwargs
            return {}

    class Probe(Float32Training, Base):
        pass

    class Images:
        tensor = torch.zeros(1, 3, 8, 8)

    preds = [[torch.zeros(1, 4, 2, 2, dtype=torch.bfloat16)], [torch.zeros(1, 4, 2, 2, dtype=torch.bfloat16)]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        Probe().forward_training(Images(), [], preds, [], iteration=3)
    assert seen == {"dtypes": {torch.float32}, "autocast": False, "kwargs": {"iteration": 3}}


@pytest.mark.parametrize(
    "amp, device, expected",
    [
        (dict(enabled=False, dtype="bfloat16"), "cpu", None),
        (dict(enabled=True, dtype=None), "cpu", torch.bfloat16),
        (dict(enabled=True, dtype=None), "cuda", torch.float16),
        (dict(enabled=True, dtype="bfloat16"), "cuda", torch.bfloat16),
        (dict(enabled=True), "cpu", torch.bfloat16),  # configs saved before train.amp.dtype existed
    ],
)
def test_amp_dtype_resolution(amp, device, expected):
    assert resolve_amp_dtype(amp, device) == expected


@pytest.mark.parametrize(
    "amp, device, message",
    [
        (dict(enabled=True, dtype="float16"), "cpu", "train.amp.dtype=bfloat16"),
        (dict(enabled=True, dtype="fp8"), "cpu", "choose one of"),
    ],
)
def test_amp_dtype_errors_name_the_setting(amp, device, message):
    with pytest.raises(ValueError, match=message):
        resolve_amp_dtype(amp, device)

