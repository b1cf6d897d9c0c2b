"""AlignmentEvaluator through train_net.py: --eval-only of every instant-test config (random-init
checkpoints, nothing trained), two processes, EvalHook during a 2-iteration training, and
tools/analyze_alignment.py from a checkpoint and from saved detections."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from _cli import REPO, instant_config, train_net  # noqa: E402

from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402

CONFIGS = [
    "retinanet_instant_test.py",
    "fcos_instant_test.py",
    "retinanet_alwa_instant_test.py",
    "mal_instant_test.py",
    "date_instant_test.py",
    "retinanet_conf_instant_test.py",
]
CHECKPOINT_ITER = 7  # saved in the random checkpoints; --eval-only writes its results at this iteration


def alignment_config(base: str, path) -> str:
    """A config = ``base`` with COCOEvaluator and AlignmentEvaluator, as the README shows users."""
    path.write_text(
        "from detectron2.config import LazyCall as L, LazyConfig\n"
        "from detectron2.evaluation import COCOEvaluator\n\n"
        "from alignment_det.evaluation import AlignmentEvaluator\n\n"
        f"_base = LazyConfig.load({instant_config(base)!r})\n"
        "model, dataloader, optimizer, lr_multiplier, train = (\n"
        "    _base[k] for k in ('model', 'dataloader', 'optimizer', 'lr_multiplier', 'train'))\n"
        "dataloader.evaluator = [\n"
        "    L(COCOEvaluator)(dataset_name='${dataloader.test.dataset.names}', output_dir='${train.output_dir}'),\n"
        "    L(AlignmentEvaluator)(dataset_name='${dataloader.test.dataset.names}', output_dir='${train.output_dir}'),\n"
        "]\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (config with both evaluators, random-init checkpoint); eval-only outputs cached."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    from alignment_det.config import load_config

    root = tmp_path_factory.mktemp("alignment_e2e")
    out = {}
    for name in CONFIGS:
        stem = name[: -len(".py")]
        cfg = alignment_config(name, root / f"{stem}_alignment.py")
        torch.manual_seed(0)
        model = instantiate(load_config(instant_config(name)).model)
        (root / stem).mkdir()
        DetectionCheckpointer(model, str(root / stem)).save("random_init", iteration=CHECKPOINT_ITER)
        out[name] = {"config": cfg, "checkpoint": str(root / stem / "random_init.pth"), "root": root / stem}
    return out


def eval_only(run, output_dir, *options):
    # Random weights score below the configs' thresholds: keep every candidate.
    thresh = "model.test_score_thresh=0.0"  # ALWA configs keep the detector's keys on model
    return train_net("--config-file", run["config"], "--eval-only", *options,
                     f"train.init_checkpoint={run['checkpoint']}", f"train.output_dir={output_dir}", thresh)


def evaluated(run):
    """(folder, stdout + stderr) of ``--eval-only`` of ``run`` without options, evaluated once per
    worker: three tests read the same one-process evaluation."""
    if "evaluated" not in run:
        proc = eval_only(run, run["root"] / "eval")
        run["evaluated"] = (run["root"] / "eval", proc.stdout + proc.stderr)
    return run["evaluated"]


def _eval_row(output_dir):
    rows = [r for r in read_metric_rows(output_dir) if any(k.startswith("alignment/") for k in r)]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("name", CONFIGS)
def test_eval_only_prints_the_table_and_writes_metrics_json(runs, name):
    out, log = evaluated(runs[name])
    coco, align = log.find("Evaluation results for bbox"), log.find("Alignment metrics (score vs localisation)")
    assert 0 <= coco < align, "the alignment table comes after the COCO table"
    row = _eval_row(out)
    assert row["iteration"] == CHECKPOINT_ITER
    for key in ("bbox/AP", "alignment/spearman_all", "alignment/ece50", "alignment/olrp", "alignment/olrp_fn",
                "alignment/nms_misranked_share", "alignment/num_detections", "alignment/iou_by_score_decile-9"):
        assert key in row, key
    assert row["alignment/num_detections"] > 0 and row["alignment/num_gt"] == 34
    assert 0 <= row["alignment/olrp"] <= 1
    report = json.loads((out / "alignment_metrics.json").read_text())
    assert report["num_detections"] == row["alignment/num_detections"]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))  # TensorBoard


def _same(a, b, rel=1e-9):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=1e-12)


def test_two_processes_give_the_numbers_of_one(runs, tmp_path):
    run = runs["retinanet_instant_test.py"]
    one_dir, _ = evaluated(run)
    proc = eval_only(run, tmp_path / "two", "--num-gpus", "2", "--dist-url", "auto")
    assert "World size: 2" in proc.stdout + proc.stderr
    one, two = _eval_row(one_dir), _eval_row(tmp_path / "two")
    keys = [k for k in one if k.startswith("alignment/")]
    assert keys and all(_same(one[k], two[k]) for k in keys), {k: (one[k], two[k]) for k in keys if not _same(one[k], two[k])}


def test_training_logs_the_signal_and_evalhook_stores_alignment(runs, tmp_path):
    run = runs["retinanet_conf_instant_test.py"]
    train_net("--config-file", run["config"], f"train.output_dir={tmp_path}", "train.max_iter=2", "train.log_period=1",
              "model.test_score_thresh=0.0")
    rows = read_metric_rows(tmp_path)
    assert any("align/score_iou_corr" in r and -1 <= r["align/score_iou_corr"] <= 1 for r in rows)
    evals = [r for r in rows if "alignment/olrp" in r]
    assert len(evals) == 1 and "bbox/AP" in evals[0]


def test_analyze_alignment_from_checkpoint_and_from_saved_detections(runs, tmp_path):
    from alignment_det.data.synthetic import cache_root

    run = runs["retinanet_instant_test.py"]
    eval_dir, _ = evaluated(run)
    gt = os.path.join(cache_root(), "synthetic_shapes_v1", "synthetic_shapes_val", "annotations.json")
    out = tmp_path / "analysis"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "analyze_alignment.py"),
         "--model", instant_config("retinanet_instant_test.py"), run["checkpoint"],
         "--results", str(eval_dir / "coco_instances_results.json"), "--gt", gt,
         "--name", "from_model", "--name", "from_json", "--output", str(out), "model.test_score_thresh=0.0"],
        capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "16/16" in proc.stderr  # the progress bar over the 16 images
    report = json.loads((out / "alignment_report.json").read_text())
    a, b = report["from_model"]["metrics"], report["from_json"]["metrics"]
    # The same detections, once from the model (contiguous class ids) and once from the json
    # (dataset ids, boxes through XYWH and back: float rounding): the same figures; only the model
    # run has the NMS candidates.
    for k in ("spearman_all", "kendall_tp50", "ece50", "ece75", "olrp", "olrp_loc", "num_detections", "num_gt"):
        assert _same(a[k], b[k], rel=1e-6), (k, a[k], b[k])
    assert "nms_misranked_share" in a and "nms_misranked_share" not in b
    row = _eval_row(eval_dir)
    assert _same(a["olrp"], row["alignment/olrp"]) and _same(a["spearman_all"], row["alignment/spearman_all"])
    for png in ("score_iou_hexbin.png", "reliability.png", "score_by_iou.png"):
        assert (out / png).stat().st_size > 10_000


def test_analyze_alignment_argument_errors(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import analyze_alignment

    with pytest.raises(SystemExit):
        analyze_alignment.main(["--output", str(tmp_path)])  # no model, no results
    with pytest.raises(SystemExit):
        analyze_alignment.main(["--results", "x.json", "--output", str(tmp_path)])  # --results without --gt
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]))
    with pytest.raises(ValueError, match="absent from"):
        analyze_alignment.records_from_coco_json(str(tmp_path / "dt.json"), str(tmp_path / "gt.json"), progress=False)

