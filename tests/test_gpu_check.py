"""benchmarks/gpu_check.py --dry-run: the prepared GPU check, run on CPU at its smallest sizes so that
it cannot rot while no GPU is lent (about 100 s of CPU time: 1.5-3 minutes on 2 cores)."""
import json
import math
import os
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

from _cli import REPO, instant_config, run_script  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import gpu_check  # noqa: E402

from alignment_det.engine.checks import check_amp  # noqa: E402
from alignment_det.config import load_config  # noqa: E402

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.py")


def cpu_bf16_autocast_supported() -> bool:
    """Whether the trainer accepts ``train.amp.enabled=True train.amp.dtype=bfloat16`` on CPU."""
    try:
        cfg = load_config(instant_config("fcos_instant_test.py"),
                          ["train.device=cpu", *gpu_check.amp_overrides("bfloat16")])
        check_amp(cfg)
    except (KeyError, ValueError, RuntimeError):
        return False
    return True


@pytest.fixture(scope="module")
def dry_run(once_per_session):
    """(exit status and output, gpu_check.json, gpu_check.md) of one dry run for the session."""
    def make(out):
        proc = run_script(SCRIPT, out, "--dry-run", check=False, timeout=900)
        return json.dumps(dict(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr))

    out, text = once_per_session("gpu_check_dry_run", make)
    proc = json.loads(text)
    assert (out / "gpu_check.md").is_file() and (out / "gpu_check.json").is_file(), proc["stdout"][-3000:] + proc["stderr"][-3000:]
    return proc, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def _rows(data, part, **match):
    return [r for r in data[part] if all(r.get(k) == v for k, v in match.items())]


def test_report_has_a_row_for_every_instant_test_dtype_and_method(dry_run):
    _, data, md = dry_run
    configs = gpu_check.instant_configs()
    assert len(configs) >= 10 and "date_instant_test.py" in configs
    assert sorted((r["config"], r["dtype"]) for r in data["instant"]) == sorted(
        (c, d) for c in configs for d in ("float32", "bfloat16"))
    assert [r["label"] for r in data["compare"]] == [label for label, _, _ in gpu_check.COMPARE_PAIRS]
    for name in configs:
        assert md.count(f"| {name} | fp32 |") == 1 and md.count(f"| {name} | bf16 |") == 1
    for label, baseline, _ in gpu_check.COMPARE_PAIRS:
        assert f"| {label} | {baseline} | 3 |" in md
    assert data["machine"]["torch"] and data["setting"]["device"] == "cpu"


def test_fp32_instant_tests_train_and_evaluate(dry_run):
    _, data, _ = dry_run
    for r in _rows(data, "instant", dtype="float32"):
        assert r["status"] == "ok", r
        assert r["loss_nan"] is False and math.isfinite(r["last_total_loss"]), r
        # the end-of-training evaluation and --eval-only see the same fp32 weights
        assert r["ap_train_end"] == r["ap_eval_only"], r
        assert os.path.isfile(os.path.join(r["output_dir"], "eval_only", "metrics.json")), "no --eval-only run"
        # --eval-only read model_final.pth; then the check dropped it (it keeps numbers, not weights)
        assert not [f for f in os.listdir(r["output_dir"]) if f.endswith(".pth") and f.startswith("model_")], r


@pytest.mark.xfail(not cpu_bf16_autocast_supported(), strict=True,
                   reason="the trainer refuses train.amp.dtype=bfloat16 on CPU (CPU autocast, issue 17 item 1)")
def test_bf16_instant_tests_train_and_evaluate(dry_run):
    _, data, _ = dry_run
    for r in _rows(data, "instant", dtype="bfloat16"):
        assert r["status"] == "ok" and r["loss_nan"] is False, r


def test_compare_gives_every_ratio_for_every_pair(dry_run):
    _, data, _ = dry_run
    for r in data["compare"] + data["date_nms"]:
        assert r["status"] == "ok", r
        assert r["timer"] == "time.perf_counter"
        ratios = ("infer_time_ratio",) if r["id"].startswith("date_nms") else (
            "train_time_ratio", "infer_time_ratio", "train_peak_ratio", "infer_peak_ratio")
        for key in ratios:
            assert r[key] > 0, (key, r)
        assert r["method_infer_median_s"] == pytest.approx(r["infer_time_ratio"] * r["baseline_infer_median_s"])
    (nms,) = data["date_nms"]
    assert nms["opts_a"] == ["model.test_score_thresh=0.0"] and nms["modes"] == ["infer"]


def test_ddp_runs_two_processes(dry_run):
    proc, data, _ = dry_run
    (r,) = data["ddp"]
    assert r["status"] == "ok" and r["iterations"] == 1 and r["loss_nan"] is False, r
    assert data["parts"]["ddp"]["status"] == "done"
    # every job passed except, before CPU autocast exists, the bf16 ones: the exit status says so
    failed = [r for p in ("instant", "compare", "date_nms", "ddp") for r in data[p] if r["status"] != "ok"]
    assert proc["returncode"] == (1 if failed else 0), (proc["returncode"], failed)


def test_a_part_out_of_time_is_stopped_and_reported(tmp_path):
    """The budget is enforced: the workers are killed, their jobs reported as timeouts, the report written."""
    proc = run_script(SCRIPT, tmp_path, "--dry-run", "--parts", "compare", "--budget-s", "2", check=False, timeout=120)
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert proc.returncode == 1
    assert data["parts"]["compare"]["status"] == "timeout" and data["parts"]["compare"]["elapsed_s"] < 10
    assert {r["status"] for r in data["compare"]} == {"timeout"}
    assert set(data["parts"]) == {"compare"} and "| MAL | retinanet_R50.py | 3 | — |" in (tmp_path / "gpu_check.md").read_text()


def test_gpu_plan_covers_every_size_and_measures_each_pair_before_more_boxes(tmp_path):
    parts = gpu_check.plan(gpu_check.gpu_setting(), str(tmp_path), visible_gpus=1)
    instant = parts["instant"]
    assert {(j["dtype"], j["max_iter"], j["device"]) for j in instant["jobs"]} == {
        (d, 100, "cuda") for d in ("float32", "float16", "bfloat16")}
    assert all(len(chunk) == 1 for chunk in instant["chunks"])  # a CUDA error ends only its own job
    compare = parts["compare"]["jobs"]
    n = len(gpu_check.COMPARE_PAIRS)
    assert [j["boxes"] for j in compare] == [10] * n + [100] * n + [300] * n
    assert {(tuple(j["size"]), j["batch"]) for j in compare} == {((800, 1333), 2)}
    assert parts["compare"]["parallel"] == 1  # timings never share the GPU
    assert parts["ddp"]["skip"] and not gpu_check.plan(gpu_check.gpu_setting(), str(tmp_path), visible_gpus=2)["ddp"]["skip"]

