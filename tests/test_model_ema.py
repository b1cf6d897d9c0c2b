"""EMA of the weights (``train.model_ema``, issue 11 item 2): the update worked out by hand,
evaluation with the EMA weights (during training and --eval-only), checkpoints, and a
bit-exact --resume on CPU against an uninterrupted run."""
import pytest
import torch
from _requires import detectron2_or_skip

detectron2_or_skip()

from detectron2.engine import hooks  # noqa: E402
from _cli import instant_config, train_net  # noqa: E402
from conftest import MINI_SPLIT  # noqa: E402

from alignment_det.engine import Trainer, build_eval_model, build_model  # noqa: E402
from alignment_det.checkpoint import CheckedCheckpointer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.engine.ema import EMA_CHECKPOINT_KEY, ModelEMA, ModelEMAHook  # noqa: E402

FCOS = instant_config("fcos_instant_test.py")


class Scalar(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([value]))
        self.register_buffer("steps", torch.tensor(0))


def test_update_by_hand():
    model = Scalar(2.0)
    ema = ModelEMA(decay=0.75)
    ema.reset(model)
    with torch.no_grad():
        model.w.fill_(6.0)
        model.steps.fill_(1)
    ema.update(model)
    # 0.75 * 2 + 0.25 * 6 = 1.5 + 1.5 = 3.0; the integer buffer is copied, not averaged.
    assert ema.state["w"].item() == 3.0 and ema.state["steps"].item() == 1
    with torch.no_grad():
        model.w.fill_(-1.0)
    ema.update(model)
    # 0.75 * 3 + 0.25 * (-1) = 2.25 - 0.25 = 2.0
    assert ema.state["w"].item() == 2.0


def test_the_average_is_kept_in_fp32_whatever_the_model_dtype():
    model = Scalar(1.0).to(torch.bfloat16)
    ema = ModelEMA(decay=0.9998)
    ema.reset(model)
    assert ema.state["w"].dtype == torch.float32 and ema.state["steps"].dtype == torch.int64
    with torch.no_grad():
        model.w.fill_(2.0)
    ema.update(model)
    # 0.9998 * 1 + 0.0002 * 2 = 1.0002: representable in fp32, lost in bf16 (8 bits of mantissa).
    assert ema.state["w"].item() == pytest.approx(1.0002, abs=1e-6)


def test_bad_decay_is_refused():
    with pytest.raises(ValueError, match="train.model_ema.decay"):
        ModelEMA(decay=1.0)


def test_applied_to_swaps_in_the_ema_weights_and_puts_them_back():
    model = Scalar(2.0)
    ema = ModelEMA(decay=0.5)
    ema.reset(model)
    with torch.no_grad():
        model.w.fill_(4.0)
    ema.update(model)  # 3.0
    with ema.applied_to(model):
        assert model.w.item() == 3.0
    assert model.w.item() == 4.0


def test_the_hook_starts_from_the_weights_unless_a_checkpoint_brought_an_average():
    model = Scalar(2.0)
    fresh = ModelEMA(decay=0.5)
    ModelEMAHook(fresh, model).before_train()
    assert fresh.state["w"].item() == 2.0
    resumed = ModelEMA(decay=0.5)
    resumed.load_state_dict({"w": torch.tensor([7.0]), "steps": torch.tensor(0)})
    ModelEMAHook(resumed, model).before_train()
    assert resumed.state["w"].item() == 7.0


def _ema_config(tmp_path, *extra):
    return load_config(FCOS, [f"train.output_dir={tmp_path}", "train.model_ema.enabled=True", *extra])


def test_evaluation_during_training_uses_the_ema_weights(tmp_path, monkeypatch):
    cfg = _ema_config(tmp_path)
    trainer = Trainer(cfg)
    trainer.model_ema.reset(trainer.model)
    for v in trainer.model_ema.state.values():
        if v.is_floating_point():
            v.add_(1.0)  # an average that differs from the weights everywhere
    raw = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    seen = {}
    monkeypatch.setattr(
        Trainer, "test", classmethod(lambda cls, cfg, model: seen.update({k: v.clone() for k, v in model.state_dict().items()}) or {})
    )
    (eval_hook,) = [h for h in trainer._hooks if isinstance(h, hooks.EvalHook)]
    eval_hook._func()
    for k, v in trainer.model_ema.state.items():
        assert torch.equal(seen[k], v.to(seen[k].dtype)), k
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, raw[k]), f"{k}: the raw weights must come back after evaluation"


@pytest.mark.parametrize("use_ema", [True, False])
def test_eval_only_uses_the_ema_weights_of_the_checkpoint(tmp_path, use_ema):
    cfg = load_config(FCOS, [f"train.output_dir={tmp_path}"])
    torch.manual_seed(0)
    model = build_model(cfg)
    ema = ModelEMA(decay=0.5)
    ema.reset(model)
    for v in ema.state.values():
        if v.is_floating_point():
            v.mul_(0.5).add_(0.25)
    CheckedCheckpointer(model, str(tmp_path), **{EMA_CHECKPOINT_KEY: ema}).save("model_final")
    # The eval config need not enable EMA: the checkpoint having it is enough.
    cfg.train.model_ema.use_ema_for_eval = use_ema
    loaded = build_eval_model(cfg, str(tmp_path / "model_final.pth"))
    expected = ema.state if use_ema else model.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, expected[k].to(v.dtype)), k


# ----------------------------------------------------------------------------- resume
DETERMINISTIC_EMA_CONFIG = '''
"""The FCOS instant test with EMA, made step-by-step reproducible across --resume (test only):
the data stream restarts after a Detectron2 resume, so every iteration gets the same 2 images;
the test runs with PYTORCH_JIT=0 (see test_alwa_e2e.py)."""
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.data import transforms as T
from detectron2.data.samplers import TrainingSampler

_cfg = LazyConfig.load({path!r})
model, optimizer, lr_multiplier, train, dataloader = _cfg.model, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train, _cfg.dataloader
dataloader.train.sampler = L(TrainingSampler)(size=2, shuffle=False)
dataloader.train.total_batch_size = 2
dataloader.train.aspect_ratio_grouping = False
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
train.model_ema = dict(enabled=True, decay=0.8, use_ema_for_eval=True)  # fast, so 14 steps move it
train.max_iter = 14
train.checkpointer.period = 6
dataloader.test.dataset.names = {mini!r}  # the test reads weights, not AP
'''


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setenv("PYTORCH_JIT", "0")
        folder = tmp_path_factory.mktemp("ema")
        config = folder / "fcos_ema_fixed_batch.py"
        config.write_text(DETERMINISTIC_EMA_CONFIG.format(path=FCOS, mini=MINI_SPLIT))
        full = folder / "full"
        train_net("--config-file", config, f"train.output_dir={full}")
        yield str(config), full


def _resume_from_iteration_5(config, full, run_dir, *, drop_ema=False):
    ckpt = torch.load(full / "model_0000005.pth", weights_only=True)
    if drop_ema:  # what a run that did not checkpoint its EMA would resume with
        del ckpt[EMA_CHECKPOINT_KEY]
    run_dir.mkdir()
    torch.save(ckpt, run_dir / "model_0000005.pth")
    (run_dir / "last_checkpoint").write_text("model_0000005.pth")
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setenv("PYTORCH_JIT", "0")
        proc = train_net("--config-file", config, "--resume", f"train.output_dir={run_dir}")
    assert "Starting training from iteration 6" in proc.stdout + proc.stderr
    return torch.load(run_dir / "model_final.pth", weights_only=True)


def test_resume_is_bit_exact_with_the_ema(ema_run, tmp_path):
    config, full = ema_run
    a = torch.load(full / "model_final.pth", weights_only=True)
    mid = torch.load(full / "model_0000005.pth", weights_only=True)
    assert EMA_CHECKPOINT_KEY in mid and EMA_CHECKPOINT_KEY in a
    moved = [k for k, v in a[EMA_CHECKPOINT_KEY].items() if v.is_floating_point() and not torch.equal(v, a["model"][k].float())]
    assert len(moved) > 10, "the average must differ from the weights, or the comparison says nothing"
    assert all(v.dtype == torch.float32 for v in a[EMA_CHECKPOINT_KEY].values() if v.is_floating_point())

    b = _resume_from_iteration_5(config, full, tmp_path / "resumed")
    for part in ("model", EMA_CHECKPOINT_KEY):
        assert set(a[part]) == set(b[part])
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after --resume"

    # Control: the same resume without the checkpointed average restarts it from the weights.
    c = _resume_from_iteration_5(config, full, tmp_path / "restarted", drop_ema=True)
    assert any(not torch.equal(a[EMA_CHECKPOINT_KEY][k], c[EMA_CHECKPOINT_KEY][k]) for k in moved)

