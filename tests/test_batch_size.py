"""Batch-size awareness (issue 11 item 3): every zoo config records the total batch its lr is
for; another batch gets a warning, and train.auto_scale_lr=True scales the lr linearly."""
import logging

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

from _cli import instant_config  # noqa: E402

from alignment_det.engine import Trainer, build_model  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.model_zoo import get_config_file, list_configs  # noqa: E402


@pytest.mark.parametrize("path", list_configs())
def test_every_zoo_config_records_its_reference_batch(path):
    cfg = load_config(get_config_file(path))
    reference = cfg.dataloader.reference_batch_size
    # Each zoo config runs at the batch its lr was set for: 16 for the COCO configs, 4 for the
    # instant tests on the synthetic set.
    assert reference == cfg.dataloader.train.total_batch_size == (4 if path.startswith("quick_schedules/") else 16)


def _lrs(overrides, caplog, config="date_instant_test.py"):
    """(lr of every param group, batch warnings) for an optimizer built as the trainer builds it."""
    # The instant preset trains from scratch and so sets DATE's backbone lr factor to 1; 0.1 (DATE's
    # own) gives the optimizer two distinct group lrs, which the scaling must keep apart.
    cfg = load_config(instant_config(config), ["optimizer.params.lr_factor_func.factor=0.1", *overrides])
    model = build_model(cfg)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alignment_det"):
        optimizer = Trainer.build_optimizer(cfg, model)
    warnings = [r.getMessage() for r in caplog.records if "reference" in r.getMessage()]
    return [g["lr"] for g in optimizer.param_groups], warnings


def test_same_batch_no_warning_and_no_scaling(caplog):
    lrs, warnings = _lrs([], caplog)
    assert warnings == []
    # DATE's instant test: AdamW 1e-3, backbone x0.1 (two distinct group lrs).
    assert sorted(set(lrs)) == pytest.approx([1e-4, 1e-3])


def test_another_batch_warns_and_keeps_the_lr(caplog):
    lrs, warnings = _lrs(["dataloader.train.total_batch_size=2"], caplog)
    assert sorted(set(lrs)) == pytest.approx([1e-4, 1e-3])
    (message,) = warnings
    assert "Total batch 2" in message and "the 4 this config's optimizer.lr" in message
    assert "train.auto_scale_lr=True" in message and "0.001 -> 0.0005" in message


@pytest.mark.parametrize("total", [2, 8])
def test_auto_scale_lr_scales_every_group_linearly(caplog, total):
    base, _ = _lrs([], caplog)
    lrs, warnings = _lrs([f"dataloader.train.total_batch_size={total}", "train.auto_scale_lr=True"], caplog)
    # mmdetection's rule: lr x actual / reference = x total / 4, for every group (backbone x0.1 kept).
    assert lrs == pytest.approx([lr * total / 4 for lr in base])
    assert len(warnings) == 1 and f"by {total}/4" in warnings[0]
