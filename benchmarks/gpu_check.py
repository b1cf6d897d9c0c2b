#!/usr/bin/env python
"""The prepared GPU check: one command, at most 10 minutes on one H100/H200, one report.

    python benchmarks/gpu_check.py OUTPUT_DIR                  # on a machine with a GPU
    python benchmarks/gpu_check.py OUTPUT_DIR --budget-s 300   # fit what is left of a session
    python benchmarks/gpu_check.py OUTPUT_DIR --dry-run        # the same on CPU, smallest sizes (CI)
    python benchmarks/gpu_check.py OUTPUT_DIR --cpu --parts instant --budget-s 3600  # fp32 vs bf16 APs on CPU

Parts, in this order; each gets its share of what is left of ``--budget-s`` (time a part does not
use passes on to the next ones):

1. ``instant``: every ``configs/quick_schedules/*_instant_test.py`` trained by ``train_net.py``'s
   ``main`` on the device in each dtype (``train.amp.enabled`` / ``train.amp.dtype``): fp32, fp16
   and bf16 on CUDA, 100 iterations; then ``--eval-only`` on its ``model_final.pth``. Recorded: the
   AP of the end-of-training evaluation and of ``--eval-only`` (same weights, both fp32: they must
   agree), the last total loss, and whether a loss became NaN/inf.
2. ``compare``: ``benchmarks/compare.py`` for every method against its baseline
   (:data:`COMPARE_PAIRS`), R50, 800x1333, batch 2, 10 / 100 / 300 boxes per image: train-step,
   inference and peak-memory ratios from ``torch.cuda.Event`` timings after warm-up. Every pair at
   10 boxes first, then 100, then 300, so a short budget still measures every pair.
3. ``date_nms``: DATE-F (top-100, no NMS) against FCOS with NMS at inference. FCOS's score
   threshold is set to 0 so that its NMS sees its full 1000 candidates per level, as a trained
   model's would: with random weights no score passes its 0.2 threshold and NMS has nothing to do.
4. ``ddp``: ``train_net.py --num-gpus 2`` on an instant test when more than one GPU is visible.

``--dry-run`` runs all four on CPU at the smallest sizes (1 iteration, evaluation on the 4 images
of ``synthetic_shapes_mini``, 64x96 images, one box count; fp32 and bf16, the only CPU autocast
dtype; DDP as 2 CPU processes over gloo), in about 100 s on 2 cores: ``tests/test_gpu_check.py``
runs it so that this script cannot rot while no GPU is lent.

Writes ``OUTPUT_DIR/gpu_check.md`` and ``OUTPUT_DIR/gpu_check.json``, rewritten whenever a result
arrives, so a run cut short still leaves everything finished until then. Each part runs in worker
processes (this script with ``--worker``; logs in ``OUTPUT_DIR/logs/``), killed when the part's time
is up; their unfinished jobs are reported as ``timeout``. Exit status 0 when every job passed.
"""
import argparse
import dataclasses
import datetime
import gc
import glob
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (label, baseline config, method config) under configs/.
COMPARE_PAIRS: Tuple[Tuple[str, str, str], ...] = (
    ("MAL", "retinanet_R50.py", "mal_R50.py"),
    ("RetinaNet-Conf", "retinanet_R50.py", "retinanet_conf_R50.py"),
    ("RetinaNet + ALWA", "retinanet_R50.py", "retinanet_alwa_R50.py"),
    ("HCRAL-RetinaNet", "retinanet_R50.py", "hcral_retinanet_R50_1x.py"),
    ("DATE-F", "fcos_R50.py", "date_F_R50_1x.py"),
    ("DATE-R", "fcos_R50.py", "date_R_R50_1x.py"),
    ("FCOS + ALWA", "fcos_R50.py", "fcos_alwa_R50.py"),
    ("HCRAL-ATSS", "atss_R50_1x.py", "hcral_atss_R50_1x.py"),
    ("HCRAL-ATSS + ALWA", "hcral_atss_R50_1x.py", "hcral_atss_alwa_R50_1x.py"),
    ("Faster R-CNN + ALWA", "faster_rcnn_R50.py", "faster_rcnn_alwa_R50.py"),
)
# DATE without NMS against FCOS with NMS over all its candidates (see the module docstring).
DATE_NMS_PAIR = ("DATE-F (no NMS) vs FCOS (NMS, score threshold 0)", "fcos_R50.py", "date_F_R50_1x.py")
DATE_NMS_OPTS_A = ("model.test_score_thresh=0.0",)
# ALWA all-reduces its loss statistics across ranks: the DDP run exercises that as well as DDP itself.
DDP_CONFIG = "retinanet_alwa_instant_test.py"
DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
PART_SHARES = {"instant": 0.40, "compare": 0.42, "date_nms": 0.06, "ddp": 0.12}


@dataclasses.dataclass(frozen=True)
class Setting:
    device: str
    dtypes: Tuple[str, ...]
    instant_iters: int
    # instant jobs: one worker process each (isolation on a GPU: a CUDA error ends only its job),
    # or split over ``parallel`` processes (the dry run: no import cost per job)
    one_job_per_worker: bool
    compare_size: Tuple[int, int]
    compare_batch: int
    boxes: Tuple[int, ...]
    iters: int
    warmup: int
    nms_iters: int
    ddp_iters: int
    compare_parallel: int  # 1 on a GPU: timings must not share the device
    # instant and DDP jobs evaluate on this dataset (None: the config's own, synthetic_shapes_val)
    instant_test_dataset: Optional[str] = None


def gpu_setting() -> Setting:
    return Setting(
        device="cuda", dtypes=("float32", "float16", "bfloat16"), instant_iters=100, one_job_per_worker=True,
        compare_size=(800, 1333), compare_batch=2, boxes=(10, 100, 300), iters=10, warmup=3, nms_iters=20,
        ddp_iters=20, compare_parallel=1,
    )


def dry_run_setting() -> Setting:
    return Setting(
        device="cpu", dtypes=("float32", "bfloat16"), instant_iters=1, one_job_per_worker=False,
        compare_size=(64, 96), compare_batch=1, boxes=(3,), iters=1, warmup=0, nms_iters=1,
        ddp_iters=1, compare_parallel=2, instant_test_dataset="synthetic_shapes_mini",
    )


def cpu_setting() -> Setting:
    """``--cpu``: the instant tests at their full 100 iterations on CPU in fp32 and bf16 (the CPU
    autocast dtype), to compare AP and NaNs across dtypes where no GPU is lent; other parts at the
    dry run's sizes."""
    return dataclasses.replace(dry_run_setting(), instant_iters=100, instant_test_dataset=None)


def instant_configs() -> List[str]:
    """Every instant test, by file name."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs", "quick_schedules", "*_instant_test.py")))


def amp_overrides(dtype: str) -> List[str]:
    """Config overrides that train in ``dtype`` (fp32: AMP off)."""
    if dtype == "float32":
        return ["train.amp.enabled=False"]
    return ["train.amp.enabled=True", f"train.amp.dtype={dtype}"]


# ----------------------------------------------------------------------------- plan


def plan(setting: Setting, output: str, *, visible_gpus: int) -> Dict[str, dict]:
    """{part: {"jobs": [...], "parallel": n, "chunks": [[job index, ...], ...], "skip": reason or None}}."""
    parts = {}
    instant = [
        dict(id=f"instant/{cfg}/{dtype}", config=cfg, dtype=dtype, device=setting.device, max_iter=setting.instant_iters,
             test_dataset=setting.instant_test_dataset, output_dir=os.path.join(output, "runs", "instant", cfg[: -len(".py")], dtype))
        for dtype in setting.dtypes for cfg in instant_configs()
    ]
    parallel = min(8, max(1, (os.cpu_count() or 2) // 2)) if setting.one_job_per_worker else 2
    parts["instant"] = dict(jobs=instant, parallel=parallel, chunks=_chunks(len(instant), None if setting.one_job_per_worker else parallel))

    def compare_job(part, label, baseline, method, boxes, iters, modes, opts_a=()):
        return dict(id=f"{part}/{label}/{boxes}", label=label, baseline=baseline, method=method, boxes=boxes,
                    device=setting.device, size=list(setting.compare_size), batch=setting.compare_batch, iters=iters,
                    warmup=setting.warmup, modes=list(modes), opts_a=list(opts_a),
                    json=os.path.join(output, "runs", part, f"{method[:-3]}_vs_{baseline[:-3]}_{boxes}boxes.json"))

    compare = [compare_job("compare", label, base, method, n, setting.iters, ("train", "infer"))
               for n in setting.boxes for label, base, method in COMPARE_PAIRS]
    parts["compare"] = dict(jobs=compare, parallel=setting.compare_parallel, chunks=_chunks(len(compare), setting.compare_parallel))
    label, base, method = DATE_NMS_PAIR
    nms = [compare_job("date_nms", label, base, method, setting.boxes[0], setting.nms_iters, ("infer",), DATE_NMS_OPTS_A)]
    parts["date_nms"] = dict(jobs=nms, parallel=1, chunks=[[0]])
    ddp = [dict(id=f"ddp/{DDP_CONFIG}", config=DDP_CONFIG, device=setting.device, max_iter=setting.ddp_iters,
                test_dataset=setting.instant_test_dataset, output_dir=os.path.join(output, "runs", "ddp", DDP_CONFIG[: -len(".py")]))]
    skip = None
    if setting.device == "cuda" and visible_gpus < 2:
        skip = f"{visible_gpus} GPU visible: the 2-process DDP run needs 2"
    parts["ddp"] = dict(jobs=ddp, parallel=1, chunks=[[0]], skip=skip, ranks=2)
    for p in parts.values():
        p.setdefault("skip", None)
        p.setdefault("ranks", 1)  # processes per worker, sharing its CPUs
    return parts


def _chunks(n: int, count: Optional[int]) -> List[List[int]]:
    """Job indices split round-robin over ``count`` workers; None: one job per worker."""
    if count is None:
        return [[i] for i in range(n)]
    return [c for c in ([i for i in range(n) if i % count == k] for k in range(count)) if c]


# ----------------------------------------------------------------------------- workers


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _ap(results) -> Optional[float]:
    ap = (results or {}).get("bbox", {}).get("AP")
    return float(ap) if ap is not None else None


def _losses(output_dir: str) -> dict:
    """The last total loss and whether any logged loss was NaN/inf, from ``metrics.json``."""
    from alignment_det.utils.metrics_file import read_metrics

    try:
        series = read_metrics(output_dir, finite_only=False)
    except FileNotFoundError:
        return dict(last_total_loss=None, loss_nan=False)
    losses = {k: v for k, v in series.items() if k == "total_loss" or k.startswith("loss")}
    total = losses.get("total_loss", ([], []))[1]
    return dict(
        last_total_loss=total[-1] if total else None,
        loss_nan=any(not math.isfinite(v) for _, values in losses.values() for v in values),
    )


def _drop_checkpoints(output_dir: str) -> None:
    """Delete a finished job's ``model_*.pth``: the check keeps its numbers, not its weights (about
    100 MB per job, 2 GB for a full run, and ``$OUT`` of the device tool brings back what is left)."""
    for name in os.listdir(output_dir):
        if name.startswith("model_") and name.endswith(".pth"):
            os.remove(os.path.join(output_dir, name))


def _test_dataset_overrides(job: dict) -> List[str]:
    return [f"dataloader.test.dataset.names={job['test_dataset']}"] if job.get("test_dataset") else []


def run_instant(job: dict) -> dict:
    """Train an instant test ``max_iter`` iterations in ``dtype``, then ``--eval-only`` its final weights."""
    from alignment_det.engine.cli import argument_parser, main

    config = os.path.join(REPO, "configs", "quick_schedules", job["config"])
    overrides = [f"train.device={job['device']}", *amp_overrides(job["dtype"]), *_test_dataset_overrides(job)]
    out = job["output_dir"]
    t0 = time.perf_counter()
    try:
        trained = main(argument_parser().parse_args(
            ["--config-file", config, *overrides, f"train.max_iter={job['max_iter']}", f"train.output_dir={out}"]
        ))
    except FloatingPointError as e:  # Detectron2's trainer stops on a non-finite loss
        return dict(_losses(out), status="nan", error=str(e).splitlines()[0], train_s=time.perf_counter() - t0, loss_nan=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluated = main(argument_parser().parse_args(
        ["--config-file", config, "--eval-only", *overrides, f"train.init_checkpoint={os.path.join(out, 'model_final.pth')}",
         f"train.output_dir={os.path.join(out, 'eval_only')}"]
    ))
    losses = _losses(out)
    _drop_checkpoints(out)
    return dict(
        status="nan" if losses["loss_nan"] else "ok", train_s=train_s, eval_s=time.perf_counter() - t0,
        ap_train_end=_ap(trained), ap_eval_only=_ap(evaluated), **losses,
    )


def run_compare(job: dict) -> dict:
    """``benchmarks/compare.py`` for one (baseline, method, boxes); the ratios method / baseline."""
    import compare as compare_cli
    import torch

    configs = os.path.join(REPO, "configs")
    argv = [os.path.join(configs, job["baseline"]), os.path.join(configs, job["method"]), "--device", job["device"], "--boxes", str(job["boxes"]),
            "--size", *map(str, job["size"]), "--batch", str(job["batch"]), "--iters", str(job["iters"]),
            "--warmup", str(job["warmup"]), "--modes", *job["modes"], "--json", job["json"]]
    if job["opts_a"]:
        argv += ["--opts-a", *job["opts_a"]]
    os.makedirs(os.path.dirname(job["json"]), exist_ok=True)
    compare_cli.main(argv)
    gc.collect()
    if torch.device(job["device"]).type == "cuda":
        torch.cuda.empty_cache()
    with open(job["json"]) as f:
        measured = json.load(f)
    base, meth = measured["rows"][0], measured["rows"][1]
    out = dict(status="ok", timer=measured["timer"])
    for key in ("train_median_s", "infer_median_s", "train_peak_bytes", "infer_peak_bytes"):
        out[f"baseline_{key}"], out[f"method_{key}"] = base[key], meth[key]
        ratio = meth[key] / base[key] if _finite(meth[key]) and _finite(base[key]) and base[key] else None
        out[key.replace("_median_s", "_time").replace("_bytes", "") + "_ratio"] = ratio
    return out


def run_ddp(job: dict) -> dict:
    """``train_net.py --num-gpus 2`` (CPU: 2 processes over gloo) for a few iterations."""
    from alignment_det.engine.cli import invoke_main
    from alignment_det.utils.metrics_file import read_metrics

    out = job["output_dir"]
    t0 = time.perf_counter()
    invoke_main(["--config-file", os.path.join(REPO, "configs", "quick_schedules", job["config"]), "--num-gpus", "2",
                 "--dist-url", "auto", f"train.device={job['device']}", f"train.max_iter={job['max_iter']}",
                 f"train.output_dir={out}", *_test_dataset_overrides(job)])
    series = read_metrics(out, finite_only=False)
    ap = series.get("bbox/AP", ([], []))[1]
    losses = _losses(out)
    _drop_checkpoints(out)
    return dict(status="nan" if losses["loss_nan"] else "ok", train_s=time.perf_counter() - t0,
                ap_train_end=ap[-1] if ap else None, iterations=max(series["total_loss"][0]) + 1, **losses)


RUNNERS = {"instant": run_instant, "compare": run_compare, "date_nms": run_compare, "ddp": run_ddp}


def worker(part: str, jobs_file: str, results_file: str) -> None:
    """Run the jobs of ``jobs_file`` in order; one JSON line per job in ``results_file``, written at once."""
    with open(jobs_file) as f:
        jobs = json.load(f)
    for job in jobs:
        t0 = time.perf_counter()
        try:
            result = RUNNERS[part](job)
        except Exception as e:  # noqa: BLE001 -- a failed job is a result; the next job still runs
            traceback.print_exc()
            last = str(e).strip().splitlines()
            result = dict(status="failed", error=f"{type(e).__name__}: {last[-1] if last else ''}"[:400])
        result.update(id=job["id"], seconds=time.perf_counter() - t0)
        with open(results_file, "a") as f:
            f.write(json.dumps(result) + "\n")


# ----------------------------------------------------------------------------- orchestration


class Check:
    """The state of a run: plan, results so far, part timings; writes the report."""

    def __init__(self, output: str, setting: Setting, budget_s: float, parts: Dict[str, dict], machine: dict):
        self.output, self.setting, self.budget_s, self.parts, self.machine = output, setting, budget_s, parts, machine
        self.started = time.time()
        self.results: Dict[str, dict] = {}
        self.part_state = {name: dict(status="skipped" if p["skip"] else "pending", reason=p["skip"]) for name, p in parts.items()}
        os.makedirs(os.path.join(output, "logs"), exist_ok=True)

    def remaining(self) -> float:
        return self.budget_s - (time.time() - self.started)

    def run_part(self, name: str) -> None:
        part = self.parts[name]
        later = [n for n in self.parts if self.part_state[n]["status"] == "pending"]
        allotted = max(0.0, self.remaining()) * PART_SHARES[name] / sum(PART_SHARES[n] for n in later)
        state = self.part_state[name]
        state.update(status="running", allotted_s=round(allotted, 1))
        self.write()
        t0 = time.time()
        deadline = t0 + allotted
        pending = list(enumerate(part["chunks"]))
        running: List[Tuple[subprocess.Popen, str]] = []
        seen = -1
        while pending or running:
            while pending and len(running) < part["parallel"]:
                k, chunk = pending.pop(0)
                running.append(self._start_worker(name, k, [part["jobs"][i] for i in chunk], part["parallel"] * part["ranks"]))
            for proc, log in list(running):
                if proc.poll() is not None:
                    running.remove((proc, log))
            self._collect(name)
            if len(self.results) != seen:
                seen = len(self.results)
                self.write()
            if time.time() > deadline:
                for proc, _ in running:
                    _kill(proc)
                state["status"] = "timeout"
                break
            time.sleep(0.5)
        self._collect(name)
        for job in part["jobs"]:  # jobs without a result: their worker was stopped, or died
            if job["id"] not in self.results:
                if state["status"] == "timeout":
                    row = dict(status="timeout", error="stopped when the part's time ran out")
                else:
                    row = dict(status="crashed", error=f"its worker exited without a result; see logs/{name}-*.log")
                self.results[job["id"]] = dict(row, id=job["id"])
        if state["status"] == "running":
            state["status"] = "done"
        state["elapsed_s"] = round(time.time() - t0, 1)
        self.write()

    def _start_worker(self, name: str, k: int, jobs: List[dict], processes: int):
        jobs_file = os.path.join(self.output, "logs", f"{name}-{k}.jobs.json")
        with open(jobs_file, "w") as f:
            json.dump(jobs, f, indent=1)
        log = os.path.join(self.output, "logs", f"{name}-{k}.log")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        # the processes of a part share the CPUs
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
        with open(log, "w") as log_f:
            proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", name, jobs_file, self._results_file(name, k)],
                cwd=REPO, env=env, stdout=log_f, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills its DDP ranks too
            )
        return proc, log

    def _results_file(self, name: str, k: int) -> str:
        return os.path.join(self.output, "logs", f"{name}-{k}.results.jsonl")

    def _collect(self, name: str) -> None:
        for path in glob.glob(os.path.join(self.output, "logs", f"{name}-*.results.jsonl")):
            with open(path) as f:
                for line in f:
                    if line.endswith("\n"):  # a line being written is read on the next poll
                        row = json.loads(line)
                        self.results[row["id"]] = row

    def rows(self, name: str) -> List[dict]:
        """Every job of a part with its result so far (status ``pending`` until one arrives)."""
        return [dict(job, **self.results.get(job["id"], dict(status="skipped" if self.parts[name]["skip"] else "pending")))
                for job in self.parts[name]["jobs"]]

    def failures(self) -> List[dict]:
        return [r for name in self.parts for r in self.rows(name) if r["status"] not in ("ok", "skipped")]

    def write(self) -> None:
        data = dict(
            started=datetime.datetime.fromtimestamp(self.started).isoformat(timespec="seconds"),
            elapsed_s=round(time.time() - self.started, 1), budget_s=self.budget_s, machine=self.machine,
            setting=dataclasses.asdict(self.setting), parts=self.part_state,
            **{name: self.rows(name) for name in self.parts},
        )
        _atomic_write(os.path.join(self.output, "gpu_check.json"), json.dumps(_json_safe(data), indent=1))
        _atomic_write(os.path.join(self.output, "gpu_check.md"), markdown(data))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _json_safe(x):
    """NaN / inf -> None, so that the JSON is standard."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def machine_info(device: str) -> dict:
    import torch

    info = dict(python=platform.python_version(), torch=torch.__version__, cpus=os.cpu_count(),
                cuda=torch.version.cuda, visible_gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if device == "cuda" and info["visible_gpus"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import detectron2

        info["detectron2"] = detectron2.__version__
    except Exception as e:  # noqa: BLE001 -- the report says why the parts failed
        info["detectron2"] = f"not importable: {type(e).__name__}: {e}"
    return info


# ----------------------------------------------------------------------------- report


def _num(x, fmt="{:.3f}") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _ms(x) -> str:
    return _num(x if x is None else x * 1e3, "{:.1f}")


def _mib(x) -> str:
    return _num(x if x is None else x / 2**20, "{:.0f}")


def _status(row) -> str:
    return row["status"] + (f": {row['error']}" if row.get("error") else "")


def _loss_nan(row) -> str:
    return "yes" if row.get("loss_nan") else "no" if "loss_nan" in row else "—"


def _instant_section(data: dict) -> List[str]:
    s = data["setting"]
    lines = [
        f"## Instant tests: {s['instant_iters']} iterations on {s['device']}, then `--eval-only`", "",
        "AP of the evaluation at the end of training and of `--eval-only` on `model_final.pth` (both fp32, "
        "same weights: they should agree). A loss that became NaN/inf stops training (status `nan`).", "",
        "| config | dtype | status | loss NaN/inf | last total loss | AP end of training | AP `--eval-only` | train (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["instant"]:
        lines.append(
            f"| {r['config']} | {DTYPE_NAMES[r['dtype']]} | {_status(r)} | {_loss_nan(r)} "
            f"| {_num(r.get('last_total_loss'))} | {_num(r.get('ap_train_end'), '{:.2f}')} | {_num(r.get('ap_eval_only'), '{:.2f}')} "
            f"| {_num(r.get('train_s'), '{:.0f}')} |"
        )
    return lines


def _compare_section(data: dict) -> List[str]:
    s = data["setting"]
    h, w = s["compare_size"]
    lines = [
        f"## Method against baseline: `benchmarks/compare.py`, R50, {h}x{w}, batch {s['compare_batch']}, "
        f"{s['device']}, medians of {s['iters']} steps after {s['warmup']} warm-up", "",
        "Ratios are method / baseline. Train step: forward + backward; peak memory: the step's own, above the "
        "memory in use before it.", "",
        "| method | baseline | boxes / image | train time ratio | inference time ratio | train peak memory ratio "
        "| inference peak memory ratio | baseline train (ms) | method train (ms) | baseline inference (ms) | method inference (ms) | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["compare"]:
        lines.append(
            f"| {r['label']} | {r['baseline']} | {r['boxes']} | {_num(r.get('train_time_ratio'))} | {_num(r.get('infer_time_ratio'))} "
            f"| {_num(r.get('train_peak_ratio'))} | {_num(r.get('infer_peak_ratio'))} | {_ms(r.get('baseline_train_median_s'))} "
            f"| {_ms(r.get('method_train_median_s'))} | {_ms(r.get('baseline_infer_median_s'))} | {_ms(r.get('method_infer_median_s'))} "
            f"| {_status(r)} |"
        )
    return lines


def _date_nms_section(data: dict) -> List[str]:
    lines = [
        f"## DATE-F without NMS against FCOS with NMS, inference, medians of {data['setting']['nms_iters']} steps", "",
        "FCOS with `model.test_score_thresh=0.0`: its NMS sees all 1000 candidates per level (random weights score "
        "below the default 0.2, which would leave NMS nothing). DATE-F: o2o top-100, no NMS.", "",
        "| boxes / image | FCOS inference (ms) | DATE-F inference (ms) | inference time ratio | inference peak memory ratio | status |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["date_nms"]:
        lines.append(f"| {r['boxes']} | {_ms(r.get('baseline_infer_median_s'))} | {_ms(r.get('method_infer_median_s'))} "
                     f"| {_num(r.get('infer_time_ratio'))} | {_num(r.get('infer_peak_ratio'))} | {_status(r)} |")
    return lines


def _ddp_section(data: dict) -> List[str]:
    lines = ["## DDP: `train_net.py --num-gpus 2`", "",
             "| config | iterations | status | loss NaN/inf | last total loss | AP end of training | time (s) |", "|---|---|---|---|---|---|---|"]
    for r in data["ddp"]:
        lines.append(f"| {r['config']} | {r.get('iterations', '—')} | {_status(r)} | {_loss_nan(r)} "
                     f"| {_num(r.get('last_total_loss'))} | {_num(r.get('ap_train_end'), '{:.2f}')} | {_num(r.get('train_s'), '{:.0f}')} |")
    return lines


SECTIONS = {"instant": _instant_section, "compare": _compare_section, "date_nms": _date_nms_section, "ddp": _ddp_section}


def markdown(data: dict) -> str:
    """The report: machine, parts, then one section per part that was asked for."""
    m, s = data["machine"], data["setting"]
    where = m.get("gpu", "CPU") + (f" ({m['visible_gpus']} visible)" if m.get("visible_gpus") else "")
    failed = [r for name in data["parts"] for r in data[name] if r["status"] not in ("ok", "skipped", "pending")]
    lines = [
        "# GPU check" + ("" if s["device"] != "cpu" else " (on CPU, --cpu)" if s["instant_iters"] >= 100 else " (dry run on CPU)"),
        "",
        f"Machine: {where}, {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}, CUDA {m['cuda']}, "
        f"Detectron2 {m['detectron2']}. Started {data['started']}, {data['elapsed_s']:.0f} s of a {data['budget_s']:.0f} s budget. "
        f"{len(failed)} job(s) not ok.",
        "",
        "| part | status | time allotted (s) | time used (s) |",
        "|---|---|---|---|",
    ]
    for name, st in data["parts"].items():
        lines.append(f"| {name} | {st['status']}{': ' + st['reason'] if st.get('reason') else ''} "
                     f"| {_num(st.get('allotted_s'), '{:.0f}')} | {_num(st.get('elapsed_s'), '{:.0f}')} |")
    for name in data["parts"]:
        lines += ["", *SECTIONS[name](data)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", help="folder for gpu_check.md, gpu_check.json, runs/ and logs/")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="the same on CPU at the smallest sizes")
    mode.add_argument("--cpu", action="store_true",
                      help="on CPU: the instant tests at 100 iterations in fp32 and bf16, the rest as --dry-run")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="seconds for the whole check (default 540: a 10-minute command with a margin)")
    p.add_argument("--parts", nargs="+", choices=list(PART_SHARES), default=list(PART_SHARES), help="run only these parts")
    args = p.parse_args(argv)
    setting = dry_run_setting() if args.dry_run else cpu_setting() if args.cpu else gpu_setting()
    machine = machine_info(setting.device)
    if setting.device == "cuda" and not machine["visible_gpus"]:
        p.error("no CUDA device is visible; run with --dry-run to check the script on CPU")
    output = os.path.abspath(args.output)
    parts = plan(setting, output, visible_gpus=machine["visible_gpus"])
    parts = {name: parts[name] for name in PART_SHARES if name in args.parts}
    check = Check(output, setting, args.budget_s, parts, machine)
    for name in parts:
        if check.part_state[name]["status"] == "pending":
            check.run_part(name)
    check.write()
    failures = check.failures()
    print(f"wrote {os.path.join(output, 'gpu_check.md')} and gpu_check.json; {len(failures)} job(s) not ok", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        sys.exit(main())
