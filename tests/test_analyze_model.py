"""tools/analyze_model.py: parameter counts (total / used at inference), training-only and dead
modules found with forward hooks, fvcore FLOPs at the requested size."""
import os
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402

from _cli import REPO, instant_config  # noqa: E402
from _inputs import tiny_model  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tools"))
import analyze_model  # noqa: E402

H, W = 128, 160


def build(config, overrides=()):
    return tiny_model(config, *overrides)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ([], {"head.o2m_cls_score", "head.o2m_bbox_pred", "head.o2m_ctrness"}),
        (["model.o2m=retinanet"], {"head.o2m_cls_score", "head.o2m_bbox_pred"}),
        (
            ["model.head.share_subnets=False"],
            {"head.o2m_cls_score", "head.o2m_bbox_pred", "head.o2m_ctrness", "head.o2m_cls_subnet", "head.o2m_bbox_subnet"},
        ),
    ],
    ids=["DATE-F", "DATE-R", "DATE-F-separate-subnets"],
)
def test_date_o2m_branch_is_training_only(overrides, expected):
    model = build("date_instant_test.py", overrides)
    usage = analyze_model.parameter_usage(model, height=H, width=W, num_classes=3)
    assert {name for name, _, _ in usage["training_only"]} == expected
    assert usage["never_called"] == []
    o2m_params = sum(p.numel() for n, p in model.named_parameters() if ".o2m_" in n)
    assert o2m_params > 0
    assert usage["total"] == sum(p.numel() for p in model.parameters())
    assert usage["total"] - usage["inference"] == o2m_params
    assert sum(n for _, _, n in usage["training_only"]) == o2m_params


def test_retinanet_uses_every_parameter_and_dead_modules_are_flagged():
    model = build("retinanet_instant_test.py")
    usage = analyze_model.parameter_usage(model, height=H, width=W, num_classes=3)
    assert usage["training_only"] == [] and usage["never_called"] == []
    assert usage["inference"] == usage["total"]
    model.head.unused_proj = torch.nn.Linear(4, 5)  # 25 parameters that no forward calls
    usage = analyze_model.parameter_usage(model, height=H, width=W, num_classes=3)
    assert usage["never_called"] == [("head.unused_proj", "Linear", 25)]
    assert usage["training_only"] == [] and usage["total"] - usage["inference"] == 25


def test_flops_follow_the_input_size_and_skip_training_only_branches():
    model = build("date_instant_test.py")
    small = analyze_model.inference_flops(model, height=H, width=W)
    large = analyze_model.inference_flops(model, height=2 * H, width=2 * W)
    # convolutions dominate: 4x the pixels, ~4x the flops
    assert 3.6 < large.total() / small.total() < 4.4
    by_module = small.by_module()  # names under Detectron2's tracing adapter: "model." + module name
    assert by_module["model.head.cls_score"] > 0 and by_module["model.head.o2m_cls_score"] == 0


def test_cli_prints_both_counts(capsys):
    rc = analyze_model.main(["--config-file", instant_config("date_instant_test.py"), "--size", str(H), str(W), "--depth", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    model = build("date_instant_test.py")
    total = sum(p.numel() for p in model.parameters())
    inference = total - sum(p.numel() for n, p in model.named_parameters() if ".o2m_" in n)
    assert f"parameters: {total:,} total" in out and f"{inference:,} used at inference" in out
    assert "head.o2m_cls_score" in out and "FLOPs at inference" in out and "| model" in out
