#!/usr/bin/env python
"""Accuracy of each method beside its baseline, with one budget: train, evaluate, tabulate, plot.

    # every default pair, 2 seeds, on the cards set, 2 CPU cores (about an hour: one process per
    # seed side by side, then one that finds every run finished and writes the report)
    python benchmarks/accuracy.py --preset cpu --seeds 0 --output output/accuracy_cpu &
    python benchmarks/accuracy.py --preset cpu --seeds 1 --output output/accuracy_cpu; wait
    python benchmarks/accuracy.py --preset cpu --seeds 0 1 --output output/accuracy_cpu --no-train
    # one pair at a reduced budget
    python benchmarks/accuracy.py --preset cpu --pairs fcos --seeds 0 --max-iter 200 --output output/acc_fcos
    # your own datasets (COCO json or Pascal VOC), registered by a file of yours
    python benchmarks/accuracy.py --preset gpu --register my_datasets.py \\
        --train-dataset mine_train --test-dataset mine_val --output output/accuracy_mine

Each (config, seed) is trained by ``train_net.py`` in a subprocess from a config generated in its
run folder, ``OUTPUT/runs/<config>/seed<k>/config.py``: it registers the datasets of ``--register``
(so every training process, ``--num-gpus`` workers included, has them), loads the zoo config,
applies the preset (:mod:`alignment_det.model_zoo.presets`: same backbone, input size, batch,
schedule and seed for every method; each keeps its optimizer family) and any ``--opts``. It is the
complete record of the run. The run evaluates every ``eval_period`` iterations and at the end.

Resuming: a run whose ``result.json`` exists is not trained again; an interrupted one resumes from
its last checkpoint (``train_net.py --resume``). Changing the settings of an existing run folder is
an error (use another ``--output``).

Writes to OUTPUT: ``results.md`` (AP, AP50, AP75 as mean ± sample std over seeds, the difference
to the pair's baseline, the alignment measures when ``alignment_det.evaluation.AlignmentEvaluator``
exists, time per iteration, wall time per run), ``results.json`` (every number, per run and
aggregated) and ``curves.png`` (total loss and AP over iterations, all runs overlaid).
"""
import argparse
import dataclasses
import datetime
import inspect
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from alignment_det.utils.metrics_file import Series, read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name for --pairs, baseline, methods). A pair whose configs are missing is skipped with a note.
DEFAULT_PAIRS = (
    ("retinanet", "retinanet_R50.py", ("mal_R50.py", "retinanet_conf_R50.py", "retinanet_alwa_R50.py")),
    ("fcos", "fcos_R50.py", ("date_F_R50_1x.py", "date_R_R50_1x.py")),
    ("atss", "atss_R50_1x.py", ("hcral_atss_R50_1x.py",)),
)
# Controls that test each paper's own claim (run them with --pairs NAME; the baseline runs are
# shared with the default pairs): HCRAL's ablation base on RetinaNet; DATE without its one-to-many
# branch (the OneNet/POTO detector DATE's faster convergence is measured against) and FCOS with
# DATE's optimizer; ATSS with HCRAL's IoU quality target.
CONTROL_PAIRS = (
    ("retinanet_controls", "retinanet_R50.py", ("hcral_retinanet_R50_1x.py",)),
    ("fcos_controls", "fcos_R50.py",
     ("projects/DATE/configs/date_F_R50_o2o_only.py", "projects/DATE/configs/fcos_R50_date_optimizer.py")),
    ("atss_controls", "atss_R50_1x.py", ("projects/HCRAL/configs/atss_iou_quality.py",)),
)
# Rows that evaluate another row's trained model again with overrides, without training:
# config -> ((folder tag, label, overrides), ...). DATE with NMS at inference (paper Table 6: within
# 0.1 AP of DATE without it).
EVAL_VARIANTS = {
    "date_F_R50_1x.py": (("nms", "DATE-F, evaluated with NMS 0.6", ("model.test_nms_thresh=0.6",)),),
}
LABELS = {
    "retinanet_R50.py": "RetinaNet",
    "mal_R50.py": "MAL",
    "retinanet_conf_R50.py": "RetinaNet-Conf",
    "retinanet_alwa_R50.py": "RetinaNet + ALWA",
    "fcos_R50.py": "FCOS",
    "date_F_R50_1x.py": "DATE-F",
    "date_R_R50_1x.py": "DATE-R",
    "atss_R50_1x.py": "ATSS",
    "hcral_atss_R50_1x.py": "HCRAL-ATSS",
    "hcral_retinanet_R50_1x.py": "HCRAL-RetinaNet",
    "projects/DATE/configs/date_F_R50_o2o_only.py": "DATE-F, one-to-one only",
    "projects/DATE/configs/fcos_R50_date_optimizer.py": "FCOS, DATE's optimizer",
    "projects/HCRAL/configs/atss_iou_quality.py": "ATSS, IoU quality target",
}
COCO_KEYS = ("bbox/AP", "bbox/AP50", "bbox/AP75")
ALIGNMENT_PREFIX = "alignment/"
# The alignment measures the table shows when the evaluator reports them (all are in results.json):
# score-IoU correlation of the detections, and how often NMS kept a worse-localised box.
ALIGNMENT_COLUMNS = ("pearson_all", "spearman_all", "nms_misranked_share", "nms_mean_iou_lost")
ALIGNMENT_LEGEND = (
    "Alignment (`alignment_det.evaluation.AlignmentEvaluator`, on the test set): `pearson_all` / `spearman_all`, "
    "correlation of a detection's score with its IoU (detections overlapping a same-class ground truth by IoU >= 0.1); "
    "`nms_misranked_share`, share of ground truths whose best-localised candidate NMS suppressed while keeping a "
    "worse-localised one, and `nms_mean_iou_lost`, the mean IoU those ground truths lost. A detector without "
    "NMS (DATE) has 0 by construction."
)
SKIP_TIMING_ITERS = 20  # the first logged iterations include start-up costs


# ------------------------------------------------------------------------------------ datasets
def dataset_classes(name: str) -> List[str]:
    """``thing_classes`` of a registered dataset: from its metadata, or loading it once (COCO json
    datasets set them on first load)."""
    from alignment_det.data import check_datasets
    from alignment_det.data.register import dataset_thing_classes

    try:
        check_datasets(name)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} Here: pass --register FILE.py, a file that registers it.") from None
    classes = dataset_thing_classes(name)
    if not classes:
        raise ValueError(f"Dataset {name!r} has no thing_classes in its metadata; register it with "
                         "alignment_det.data.register_coco_json or register_voc.")
    return list(classes)


def dataset_num_classes(train_dataset: str, test_dataset: str) -> int:
    """The class count of the training set, checked against the test set's classes."""
    train, test = dataset_classes(train_dataset), dataset_classes(test_dataset)
    if train != test:
        raise ValueError(f"{train_dataset} and {test_dataset} have different classes ({train} vs {test}); "
                         "a model trained on one cannot be evaluated on the other.")
    return len(train)


# ------------------------------------------------------------------------------------ configs
def resolve_config(name: str) -> Optional[str]:
    """Absolute path of a config file or zoo name; None when it does not exist."""
    from alignment_det.engine.config import resolve_config_file

    for candidate in (name, os.path.join(REPO, name)):  # a project config, from any folder
        try:
            return os.path.abspath(resolve_config_file(candidate))
        except FileNotFoundError:
            continue
    return None


def select_configs(pair_names: Optional[Sequence[str]], configs: Optional[Sequence[str]], log=print):
    """[(pair name or None, baseline config or None, config name, path)] in table order."""
    if configs:
        out = []
        for c in configs:
            path = resolve_config(c)
            if path is None:
                raise FileNotFoundError(f"--configs {c}: neither a file nor a zoo config")
            out.append((None, None, c, path))
        return out
    known = {p[0] for p in DEFAULT_PAIRS + CONTROL_PAIRS}
    wanted = [p.lower() for p in pair_names] if pair_names else [p[0] for p in DEFAULT_PAIRS]
    unknown = set(wanted) - known
    if unknown:
        raise ValueError(f"Unknown --pairs {sorted(unknown)}; known: {sorted(known)}")
    out = []
    for name, baseline, methods in DEFAULT_PAIRS + CONTROL_PAIRS:
        if name not in wanted:
            continue
        paths = {c: resolve_config(c) for c in (baseline, *methods)}
        missing = [c for c, p in paths.items() if p is None]
        if missing:
            log(f"note: pair {name!r} skipped: {', '.join(missing)} not in this checkout")
            continue
        out += [(name, baseline, c, paths[c]) for c in (baseline, *methods)]
    if not out:
        raise ValueError("No config to run.")
    return out


def alignment_evaluator_class(log=print):
    """``alignment_det.evaluation.AlignmentEvaluator`` when it exists, else None (with a note)."""
    try:
        from alignment_det.evaluation import AlignmentEvaluator
    except ImportError as e:
        log(f"note: no alignment columns: alignment_det.evaluation.AlignmentEvaluator is not available ({e})")
        return None
    return AlignmentEvaluator


def _alignment_kwargs(cls, *, dataset_name: str, output_dir: str) -> Dict[str, str]:
    params = inspect.signature(cls).parameters
    kwargs = {}
    if "dataset_name" in params:
        kwargs["dataset_name"] = dataset_name
    if "output_dir" in params:
        kwargs["output_dir"] = output_dir
    return kwargs


RUN_CONFIG = '''"""Generated by benchmarks/accuracy.py; the complete record of one run.

{config_name} scaled down by the {preset_name} preset (alignment_det.model_zoo.presets), trained
on {train_dataset} and evaluated on {test_dataset} ({num_classes} classes, read from the dataset),
seed {seed}. Re-run or resume it with
    python train_net.py --config-file {path} --resume
"""
from alignment_det.data import run_registration_files
from alignment_det.engine.config import apply_overrides, load_config
from alignment_det.model_zoo.presets import apply_preset, get_preset

# The user's datasets, registered in every process that loads this config (training workers too).
run_registration_files({register!r})

_cfg = load_config({config_file!r})
apply_preset(
    _cfg,
    get_preset({preset!r}, max_iter={max_iter!r}),
    train_dataset={train_dataset!r},
    test_dataset={test_dataset!r},
    num_classes={num_classes!r},
    seed={seed!r},
    output_dir={run_dir!r},
    evaluator_output_dir={run_dir!r},
)
{alignment}_cfg = apply_overrides(_cfg, {overrides!r})

model, dataloader, optimizer, train, lr_multiplier = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.train, _cfg.lr_multiplier
)
'''

ALIGNMENT_BLOCK = '''
# COCO AP and the alignment measures in one pass over the test set.
from detectron2.config import LazyCall as _L  # noqa: E402
from {module} import {name} as _AlignmentEvaluator  # noqa: E402

_cfg.dataloader.evaluator.dataset_name = {test_dataset!r}  # literal: the node moves into a list
_cfg.dataloader.evaluator = [_cfg.dataloader.evaluator, _L(_AlignmentEvaluator)(**{kwargs!r})]
'''


def run_config_text(
    *, path: str, config_name: str, config_file: str, preset: str, max_iter: Optional[int], train_dataset: str,
    test_dataset: str, num_classes: int, seed: int, run_dir: str, register: Sequence[str],
    overrides: Sequence[str], alignment_cls=None,
) -> str:
    """The generated config of one run (see the module docstring)."""
    from alignment_det.model_zoo.presets import get_preset

    alignment = ""
    if alignment_cls is not None:
        alignment = ALIGNMENT_BLOCK.format(
            module=alignment_cls.__module__, name=alignment_cls.__name__, test_dataset=test_dataset,
            kwargs=_alignment_kwargs(alignment_cls, dataset_name=test_dataset, output_dir=run_dir),
        ) + "\n"
    return RUN_CONFIG.format(
        config_name=config_name, preset_name=get_preset(preset, max_iter=max_iter).name, path=path,
        train_dataset=train_dataset, test_dataset=test_dataset, num_classes=num_classes, seed=seed,
        register=[os.path.abspath(r) for r in register], config_file=config_file, preset=preset,
        max_iter=max_iter, run_dir=run_dir, alignment=alignment, overrides=list(overrides),
    )


def prepare_run_dir(run_dir: str, text: str) -> str:
    """Write ``config.py`` into ``run_dir`` (the same text again is a no-op; other settings an error)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "config.py")
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() != text:
                raise RuntimeError(
                    f"{path} was generated with other settings (preset, datasets, overrides, register files or "
                    "evaluators changed). Use another --output, or delete that run folder to train it again."
                )
    else:
        with open(path, "w") as f:
            f.write(text)
    return path


# ------------------------------------------------------------------------------------ runs
def train_net_command(config_path: str, num_gpus: int) -> List[str]:
    # --resume: continue from the run folder's last checkpoint, or start when there is none.
    return [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config_path, "--resume",
            "--num-gpus", str(num_gpus)]


def run_subprocess(cmd: Sequence[str], log_path: str) -> int:
    """Run ``cmd`` with this checkout first on PYTHONPATH, appending its output to ``log_path``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "a") as log:
        return subprocess.run(list(cmd), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def summarize_run(series: Series, max_iter: int) -> dict:
    """Final metrics, timing and curves of one run from its metrics.json series
    (:func:`alignment_det.utils.metrics_file.read_metrics` with ``finite_only=False``).

    Curves are over completed iterations: a training record of iteration ``i`` (0-based) is after
    ``i + 1`` iterations; the trainer logs an evaluation after iteration ``i`` at ``i`` (the final one
    at ``max_iter - 1``; Detectron2's own trainer at ``max_iter``), so an evaluation is at ``min(i + 1, max_iter)``.
    """
    ap_its, ap_values = series.get(COCO_KEYS[0], ([], []))
    final_it = ap_its[-1] if ap_its else None
    metrics = {}
    for key, (its, values) in series.items():
        if (key in COCO_KEYS or key.startswith(ALIGNMENT_PREFIX)) and final_it in its:
            metrics[key] = values[its.index(final_it)]

    def after_start(key):
        its, values = series.get(key, ([], []))
        return [v for i, v in zip(its, values) if i >= SKIP_TIMING_ITERS]

    times, data_times = after_start("time"), after_start("data_time")
    loss_its, losses = series.get("total_loss", ([], []))
    return dict(
        metrics=metrics,
        evaluated_at=min(final_it + 1, max_iter) if final_it is not None else None,
        s_per_iter=statistics.median(times) if times else None,
        data_s_per_iter=statistics.median(data_times) if data_times else None,
        loss_curve=[[i + 1, v] for i, v in zip(loss_its, losses)],
        ap_curve=[[min(i + 1, max_iter), v] for i, v in zip(ap_its, ap_values)],
    )


def evaluate_again(run_dir: str, config_path: str, overrides: Sequence[str], *, tag: str,
                   runner: Callable[[Sequence[str], str], int], train: bool = True, log=print) -> dict:
    """Evaluate a finished run's ``model_final.pth`` again with ``overrides`` (``--eval-only``) into
    ``run_dir/eval_<tag>``; returns a result like :func:`run_one`'s (metrics of that evaluation), read
    from its ``result.json`` when it exists. The evaluators keep writing their prediction dumps into
    ``run_dir`` (the generated config names it); the run's own metrics are in its metrics.json."""
    eval_dir = os.path.join(run_dir, f"eval_{tag}")
    result_path = os.path.join(eval_dir, "result.json")
    if os.path.isfile(result_path):
        with open(result_path) as f:
            return json.load(f)
    checkpoint = os.path.join(run_dir, "model_final.pth")
    if not train or not os.path.isfile(checkpoint):
        log(f"not evaluated ({'--no-train' if not train else 'no model_final.pth'}): {eval_dir}")
        return dict(failed=True, returncode=None)
    os.makedirs(eval_dir, exist_ok=True)
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config_path, "--eval-only",
           f"train.init_checkpoint={checkpoint}", f"train.output_dir={eval_dir}", *overrides]
    log(f"evaluating again ({' '.join(overrides)}): {eval_dir}")
    code = runner(cmd, os.path.join(eval_dir, "eval.log"))
    metrics_file = os.path.join(eval_dir, "metrics.json")
    series = read_metrics(metrics_file, finite_only=False) if os.path.isfile(metrics_file) else {}
    metrics = {k: values[-1] for k, (_, values) in series.items()
               if values and (k in COCO_KEYS or k.startswith(ALIGNMENT_PREFIX))}
    if code != 0 or COCO_KEYS[0] not in metrics:
        log(f"FAILED (exit {code}): {eval_dir}; see {os.path.join(eval_dir, 'eval.log')}")
        return dict(failed=True, returncode=code)
    result = dict(metrics=metrics, overrides=list(overrides), ap_curve=[], loss_curve=[])
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def remove_intermediate_checkpoints(run_dir: str) -> None:
    """Keep ``model_final.pth`` (for re-evaluation) and drop the periodic ones."""
    for f in os.listdir(run_dir):
        if f.startswith("model_") and f.endswith(".pth") and f != "model_final.pth":
            os.remove(os.path.join(run_dir, f))


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes of this one (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(run_dir: str, config_path: str, *, max_iter: int, num_gpus: int, keep_checkpoints: bool,
            runner: Callable[[Sequence[str], str], int], train: bool = True, log=print) -> dict:
    """Train (or resume) one run unless its result.json exists; returns the result (``failed``
    is set when the run did not finish; ``train=False`` only reads finished runs)."""
    result_path = os.path.join(run_dir, "result.json")
    if os.path.isfile(result_path):
        with open(result_path) as f:
            result = json.load(f)
        log(f"done already: {run_dir}")
        return result
    if not train:
        log(f"not finished (--no-train): {run_dir}")
        return dict(failed=True, returncode=None)
    wall_path = os.path.join(run_dir, "wall_times.json")
    walls = []
    if os.path.isfile(wall_path):
        with open(wall_path) as f:
            walls = json.load(f)
    log(f"training: {run_dir}" + (f" (resuming; {len(walls)} earlier attempt(s))" if walls else ""))
    load_before = os.getloadavg()[0]
    t0, cpu0 = time.time(), _children_cpu_s()
    code = runner(train_net_command(config_path, num_gpus), os.path.join(run_dir, "train.log"))
    # CPU time of the training processes: on a shared machine it varies far less than wall time.
    walls.append(dict(wall_s=time.time() - t0, cpu_s=_children_cpu_s() - cpu0, returncode=code,
                      load_before=load_before, load_after=os.getloadavg()[0],
                      # what the training processes' torch used (they inherit this environment)
                      omp_num_threads=os.environ.get("OMP_NUM_THREADS", "default"),
                      finished=datetime.datetime.now().isoformat(timespec="seconds")))
    with open(wall_path, "w") as f:
        json.dump(walls, f, indent=1)
    metrics_file = os.path.join(run_dir, "metrics.json")
    summary = summarize_run(read_metrics(metrics_file, finite_only=False) if os.path.isfile(metrics_file) else {}, max_iter)
    if code != 0 or summary["evaluated_at"] != max_iter:
        log(f"FAILED (exit {code}): {run_dir}; see {os.path.join(run_dir, 'train.log')}")
        return dict(failed=True, returncode=code, wall_s=sum(w["wall_s"] for w in walls))
    result = dict(summary, wall_s=sum(w["wall_s"] for w in walls), cpu_s=sum(w.get("cpu_s", 0.0) for w in walls),
                  attempts=len(walls), load_avg=[w[k] for w in walls for k in ("load_before", "load_after") if k in w],
                  omp_num_threads=sorted({w.get("omp_num_threads", "unrecorded") for w in walls}))
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    if not keep_checkpoints:
        remove_intermediate_checkpoints(run_dir)
    return result


# ------------------------------------------------------------------------------------ report
def mean_std(values: Sequence[float]):
    """(mean, sample std with n - 1; None for one value). NaN (no detection at all) propagates."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def aggregate(runs: Sequence[dict]) -> dict:
    """Mean and spread over seeds of every metric, time per iteration and wall time."""
    done = [r for r in runs if not r.get("failed")]
    keys = sorted({k for r in done for k in r["metrics"]})
    out = {"seeds": len(done), "failed": len(runs) - len(done), "metrics": {}}
    for k in keys:
        mean, std = mean_std([r["metrics"][k] for r in done if k in r["metrics"]])
        out["metrics"][k] = dict(mean=mean, std=std)
    for k in ("s_per_iter", "wall_s", "cpu_s"):
        vals = [r[k] for r in done if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    return out


def _fmt(mean, std, digits=1):
    if mean is None:
        return "—"
    if isinstance(mean, float) and math.isnan(mean):
        return "nan"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _duration(seconds):
    if seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min"


def markdown_table(rows: Sequence[dict], *, alignment_keys: Sequence[str]) -> str:
    """rows: dicts with pair, label, config, optimizer, agg, baseline_agg (or None)."""
    head = ["pair", "method", "config", "optimizer, lr", "seeds", "AP", "AP50", "AP75", "ΔAP vs baseline"]
    head += [k[len(ALIGNMENT_PREFIX):] for k in alignment_keys] + ["s / it", "wall / run", "CPU time / run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        agg, base = row["agg"], row["baseline_agg"]
        m = agg["metrics"]
        cells = [row["pair"] or "", row["label"], f"`{row['config']}`", row["optimizer"],
                 str(agg["seeds"]) + (f" (+{agg['failed']} failed)" if agg["failed"] else "")]
        cells += [_fmt(m.get(k, {}).get("mean"), m.get(k, {}).get("std")) for k in COCO_KEYS]
        if base is None or base is agg or COCO_KEYS[0] not in m or COCO_KEYS[0] not in base["metrics"]:
            cells.append("—" if base is not agg else "(baseline)")
        else:
            cells.append(f"{m[COCO_KEYS[0]]['mean'] - base['metrics'][COCO_KEYS[0]]['mean']:+.1f}")
        cells += [_fmt(m.get(k, {}).get("mean"), m.get(k, {}).get("std"), digits=3) for k in alignment_keys]
        cells += [f"{agg['s_per_iter']:.2f} s" if agg["s_per_iter"] else "—", _duration(agg["wall_s"]),
                  _duration(agg["cpu_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(runs: Sequence[dict], path: str, *, title: str) -> None:
    """Total loss and AP over iterations, every run overlaid: one colour per config, one line style
    per seed. ``runs``: dicts with ``label``, ``seed``, ``loss_curve`` and ``ap_curve`` ([[it, value]])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    colors = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    styles = {s: ("-", "--", ":", "-.")[i % 4] for i, s in enumerate(seeds)}
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(13, 5))
    for r in runs:
        kw = dict(color=colors[r["label"]], linestyle=styles[r["seed"]], label=f"{r['label']} (seed {r['seed']})")
        if r["loss_curve"]:
            ax_loss.plot(*zip(*r["loss_curve"]), marker=".", markersize=2, **kw)
        if r["ap_curve"]:
            ax_ap.plot(*zip(*r["ap_curve"]), marker="o", markersize=3, **kw)
    ax_loss.set(xlabel="iteration", ylabel="total loss (20-it median; differs by method)", yscale="log", title="training loss")
    ax_ap.set(xlabel="iteration", ylabel="COCO AP (test set)", title="AP over training")
    for ax in (ax_loss, ax_ap):
        ax.grid(alpha=0.3)
    ax_ap.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_description(device: str, omp_num_threads: Sequence[str] = ()) -> str:
    """The machine, and the ``OMP_NUM_THREADS`` the training processes ran with (recorded per run:
    the report may be written by another process, e.g. ``--no-train``, with other settings)."""
    import torch

    cpu = platform.processor() or platform.machine()
    threads = ", ".join(sorted(set(omp_num_threads))) or "unrecorded"
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} (training processes: OMP_NUM_THREADS={threads})"
    if device == "cuda" and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def optimizer_description(config_path: str) -> str:
    """``SGD 0.01`` etc. as the preset sets it (read from the generated config)."""
    from alignment_det.engine.config import load_config
    from alignment_det.model_zoo.presets import optimizer_family

    cfg = load_config(config_path)
    text = f"{optimizer_family(cfg.optimizer)} {cfg.optimizer.lr:g}"
    if cfg.optimizer.params.get("lr_factor_func") is not None:
        text += f", backbone x{cfg.optimizer.params.lr_factor_func.factor:g}"
    if cfg.train.clip_grad.enabled:
        text += f", clip {cfg.train.clip_grad.clip_value:g}"
    return text


# ------------------------------------------------------------------------------------ main
def argument_parser():
    from alignment_det.model_zoo.presets import PRESETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--max-iter", type=int, default=None,
                   help="another budget for every run; the preset's steps, warm-up and periods scale with it")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pairs", nargs="+", metavar="PAIR",
                       help=f"pairs to run (default: all of {[d[0] for d in DEFAULT_PAIRS]}; controls: "
                        f"{[d[0] for d in CONTROL_PAIRS]})")
    which.add_argument("--configs", nargs="+", metavar="CONFIG", help="configs (files or zoo names) instead of pairs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help=">= 2 seeds give mean and spread")
    p.add_argument("--dataset", choices=("cards", "chess"), default=None,
                   help="a built-in benchmark set: cards (sparse, ~2 boxes per image) or chess (dense, ~10); "
                        "sets --train-dataset NAME_train and --test-dataset NAME_test")
    p.add_argument("--train-dataset", default="cards_train")
    p.add_argument("--test-dataset", default="cards_test")
    p.add_argument("--register", nargs="+", default=[], metavar="FILE.py",
                   help="Python files that register your datasets (alignment_det.data.register_coco_json / register_voc)")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run (recorded)")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per run (train_net.py --num-gpus)")
    p.add_argument("--output", required=True, help="folder for the runs and the report")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the periodic checkpoints of finished runs")
    p.add_argument("--no-train", action="store_true", help="only tabulate and plot the runs that finished")
    return p


def main(argv=None, *, runner: Callable[[Sequence[str], str], int] = run_subprocess) -> dict:
    args = argument_parser().parse_args(argv)
    if args.dataset:
        args.train_dataset, args.test_dataset = f"{args.dataset}_train", f"{args.dataset}_test"
    from alignment_det.model_zoo.presets import get_preset

    from alignment_det.data import run_registration_files  # also registers the built-in datasets

    preset = get_preset(args.preset, max_iter=args.max_iter)
    run_registration_files(args.register)
    num_classes = dataset_num_classes(args.train_dataset, args.test_dataset)
    selected = select_configs(args.pairs, args.configs)
    alignment_cls = alignment_evaluator_class()
    output = os.path.abspath(args.output)
    runs_root = os.path.join(output, "runs")
    print(f"{len(selected)} configs x {len(args.seeds)} seeds, preset {preset.name}: {preset.describe()}")

    per_config: Dict[str, dict] = {}
    for pair, baseline, name, path in selected:
        stem = os.path.splitext(os.path.basename(name))[0]
        runs, config_path = [], None
        for seed in args.seeds:
            run_dir = os.path.join(runs_root, stem, f"seed{seed}")
            config_path = os.path.join(run_dir, "config.py")
            text = run_config_text(
                path=config_path, config_name=name, config_file=path, preset=args.preset, max_iter=args.max_iter,
                train_dataset=args.train_dataset, test_dataset=args.test_dataset, num_classes=num_classes,
                seed=seed, run_dir=run_dir, register=args.register, overrides=args.opts, alignment_cls=alignment_cls,
            )
            prepare_run_dir(run_dir, text)
            result = run_one(run_dir, config_path, max_iter=preset.max_iter, num_gpus=args.num_gpus,
                             keep_checkpoints=args.keep_checkpoints, runner=runner, train=not args.no_train)
            runs.append(dict(result, seed=seed, run_dir=run_dir))
        label = LABELS.get(name, LABELS.get(os.path.basename(name), stem))
        optimizer = optimizer_description(config_path)
        per_config[name] = dict(pair=pair, baseline=baseline, label=label, config=name, optimizer=optimizer,
                                runs=runs, aggregate=aggregate(runs))
        for tag, variant_label, overrides in EVAL_VARIANTS.get(name, ()):
            variant_runs = [
                dict(evaluate_again(r["run_dir"], os.path.join(r["run_dir"], "config.py"), overrides, tag=tag,
                                    runner=runner, train=not args.no_train),
                     seed=r["seed"], run_dir=r["run_dir"])
                for r in runs if not r.get("failed")
            ]
            per_config[f"{name} [{tag}]"] = dict(
                pair=pair, baseline=baseline, label=variant_label, config=f"{name} {' '.join(overrides)}",
                optimizer=optimizer, runs=variant_runs, aggregate=aggregate(variant_runs),
            )
    return write_report(args, preset, num_classes, per_config, output)


def alignment_columns(keys) -> List[str]:
    """The ``alignment/*`` keys to tabulate: those of :data:`ALIGNMENT_COLUMNS` that are present, else
    every scalar one (no per-bin ``-i`` values, no counts)."""
    keys = {k for k in keys if k.startswith(ALIGNMENT_PREFIX)}
    chosen = [ALIGNMENT_PREFIX + c for c in ALIGNMENT_COLUMNS if ALIGNMENT_PREFIX + c in keys]
    return chosen or sorted(k for k in keys if "-" not in k and not k[len(ALIGNMENT_PREFIX):].startswith("num_"))


def write_report(args, preset, num_classes: int, per_config: Dict[str, dict], output: str) -> dict:
    alignment_keys = alignment_columns({k for c in per_config.values() for k in c["aggregate"]["metrics"]})
    rows = [dict(c, agg=c["aggregate"], baseline_agg=per_config[c["baseline"]]["aggregate"] if c["baseline"] else None)
            for c in per_config.values()]
    machine = machine_description(
        preset.device, [t for c in per_config.values() for r in c["runs"] for t in r.get("omp_num_threads", ["unrecorded"])]
    )
    loads = [x for c in per_config.values() for r in c["runs"] for x in r.get("load_avg", [])]
    if loads:  # other jobs on the machine slow every run down: say how busy it was
        machine += f"; 1-min load average {min(loads):.1f}-{max(loads):.1f} at the starts and ends of the runs"
    seeds = " ".join(map(str, args.seeds))
    header = (
        f"Preset `{preset.name}` ({preset.describe()}). Trained from scratch on `{args.train_dataset}`, evaluated on "
        f"`{args.test_dataset}` ({num_classes} classes); seeds {seeds}; mean ± sample standard deviation over "
        f"seeds (none shown for one seed). AP in percent (COCO AP at IoU 0.50:0.95). "
        + (f"Overrides for every run: `{' '.join(args.opts)}`. " if args.opts else "")
        + f"Machine: {machine}. "
        "A small-scale from-scratch comparison: it says nothing about COCO accuracy with pretrained backbones."
    )
    table = markdown_table(rows, alignment_keys=alignment_keys)
    if alignment_keys:
        table += "\n\n" + ALIGNMENT_LEGEND
    with open(os.path.join(output, "results.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
    report = dict(
        preset=dataclasses.asdict(preset), preset_description=preset.describe(), train_dataset=args.train_dataset,
        test_dataset=args.test_dataset, num_classes=num_classes, seeds=args.seeds, opts=args.opts,
        num_gpus=args.num_gpus, machine=machine, configs=per_config,
    )
    with open(os.path.join(output, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    curves = [dict(label=c["label"], seed=r["seed"], loss_curve=r.get("loss_curve", []), ap_curve=r.get("ap_curve", []))
              for c in per_config.values() for r in c["runs"] if not r.get("failed")]
    plot_curves(curves, os.path.join(output, "curves.png"),
                title=f"preset {preset.name}, {args.train_dataset} -> {args.test_dataset}, seeds {seeds}")
    print(header + "\n\n" + table)
    print(f"\nwrote {output}/results.md, results.json, curves.png")
    return report


if __name__ == "__main__":
    report = main()
    failed = sum(c["aggregate"]["failed"] for c in report["configs"].values())
    sys.exit(1 if failed else 0)
