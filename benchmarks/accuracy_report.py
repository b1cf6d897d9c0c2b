"""The report of ``benchmarks/accuracy.py``: what a finished run's ``metrics.json`` says
(:func:`summarize_run`), mean and spread over seeds (:func:`aggregate`), and ``results.md``,
``results.json`` and ``curves.png`` (:func:`write_report`). ``accuracy.py`` runs the trainings;
nothing here starts a process.
"""
import dataclasses
import json
import math
import os
import platform
import statistics
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from alignment_det.config import load_config
from alignment_det.config.presets import optimizer_family
from alignment_det.utils.metrics_file import Series

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



def mean_std(values: Sequence[float]):
    """(mean, sample std with n - 1; None for one value). NaN (no detection at all) propagates."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    if any(math.isnan(v) for v in values):
        # statistics.stdev raises AttributeError on a NaN in CPython 3.11 instead of returning NaN.
        return mean, math.nan
    return mean, statistics.stdev(values)


def finished(run: dict) -> bool:
    """Whether a run has results: not ``failed`` (it ran and did not finish) and not ``not_run``
    (``--no-train`` found no result for that seed)."""
    return not run.get("failed") and not run.get("not_run")


def aggregate(runs: Sequence[dict]) -> dict:
    """Mean and spread over seeds of every metric; median time per iteration, wall, CPU and training time."""
    done = [r for r in runs if finished(r)]
    keys = sorted({k for r in done for k in r["metrics"]})
    out = {"seeds": len(done), "failed": sum(1 for r in runs if r.get("failed")),
           "not_run": sum(1 for r in runs if r.get("not_run")), "metrics": {}}
    for k in keys:
        mean, std = mean_std([r["metrics"][k] for r in done if k in r["metrics"]])
        out["metrics"][k] = dict(mean=mean, std=std)
    for k in ("s_per_iter", "wall_s", "cpu_s"):
        vals = [r[k] for r in done if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    # Training time from the logged time per iteration: a resumed run's wall_s and cpu_s hold only
    # the attempts that ended (one killed with its machine leaves no record), this holds them all.
    train = [r["s_per_iter"] * r["evaluated_at"] for r in done if r.get("s_per_iter") and r.get("evaluated_at")]
    out["train_s"] = statistics.median(train) if train else None
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
    head += [k[len(ALIGNMENT_PREFIX):] for k in alignment_keys] + ["s / it", "training time / run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        agg, base = row["agg"], row["baseline_agg"]
        m = agg["metrics"]
        cells = [row["pair"] or "", row["label"], f"`{row['config']}`", row["optimizer"],
                 str(agg["seeds"]) + (f" (+{agg['failed']} failed)" if agg["failed"] else "")
                 + (f" (+{agg['not_run']} not run)" if agg.get("not_run") else "")]
        cells += [_fmt(m.get(k, {}).get("mean"), m.get(k, {}).get("std")) for k in COCO_KEYS]
        if base is None or base is agg or COCO_KEYS[0] not in m or COCO_KEYS[0] not in base["metrics"]:
            cells.append("—" if base is not agg else "(baseline)")
        else:
            cells.append(f"{m[COCO_KEYS[0]]['mean'] - base['metrics'][COCO_KEYS[0]]['mean']:+.1f}")
        cells += [_fmt(m.get(k, {}).get("mean"), m.get(k, {}).get("std"), digits=3) for k in alignment_keys]
        cells += [f"{agg['s_per_iter']:.2f} s" if agg["s_per_iter"] else "—", _duration(agg["train_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def distinct_colors(n: int) -> list:
    """``n`` colours, no two alike: tab10 up to 10 lines, tab20 up to 20, evenly spaced hues beyond.
    Cycling tab10 gave two of the cards FCOS panel's 13 controls one colour and one line style."""
    import matplotlib.pyplot as plt

    if n <= 20:
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
        return [cmap(i) for i in range(n)]
    return [plt.get_cmap("gist_rainbow")(i / n) for i in range(n)]


def plot_curves(runs: Sequence[dict], path: str, *, title: str) -> None:
    """Total loss and AP over iterations, every run overlaid: one colour per config, one line style
    per seed. ``runs``: dicts with ``label``, ``seed``, ``loss_curve`` and ``ap_curve`` ([[it, value]])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    colors = dict(zip(labels, distinct_colors(len(labels))))
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
    heading = fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    # Under both panels, outside the layout, as in pairs.png: a full benchmark has dozens of runs,
    # and a legend inside the AP panel hid its curves and ran off the bottom of the figure.
    handles, names = ax_ap.get_legend_handles_labels()
    legend = fig.legend(handles, names, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                        ncol=max(1, min(4, math.ceil(len(handles) / 10))), frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight", bbox_extra_artists=[legend, heading])
    plt.close(fig)


def plateau(ap_curve, *, max_iter: int, first_drop: Optional[int], tolerance: float = 1.0,
            min_ap: float = 5.0) -> Optional[dict]:
    """Whether a run's AP had stopped improving before its first lr drop.

    The rule: the AP of the last evaluation at or before the first drop (``max_iter`` without one)
    is within ``tolerance`` AP of the AP a quarter of the schedule (``max_iter / 4``) earlier, read at
    the last evaluation at or before that point. ``ap_curve``: [[iteration, AP], ...] as in
    result.json. None when the curve has no two such evaluations (e.g. an unfinished run).

    A curve still under ``min_ap`` at that last evaluation has not started learning, and two
    near-zero APs are "within 1 AP" of each other without having stopped improving (seen on the
    GPU preset: 0.0 at 75 iterations, 0.6 at 225). Such a run gets ``learning=False`` and is
    never called flat.
    """
    end = first_drop if first_drop else max_iter
    before = [(it, ap) for it, ap in ap_curve if it <= end and not math.isnan(ap)]
    if not before:
        return None
    last_it, last_ap = before[-1]
    earlier = [(it, ap) for it, ap in before if it <= last_it - max_iter / 4]
    if not earlier:
        return None
    early_it, early_ap = earlier[-1]
    gain = last_ap - early_ap
    learning = last_ap >= min_ap
    return dict(iteration=last_it, ap=last_ap, earlier_iteration=early_it, earlier_ap=early_ap, gain=gain,
                learning=learning, flat=learning and abs(gain) <= tolerance)


def plateau_table(per_config: Dict[str, dict], *, max_iter: int, first_drop: Optional[int]) -> str:
    """The rule of :func:`plateau` for every baseline run, as markdown."""
    lines = ["| baseline | seed | AP before the first drop | AP a quarter earlier | gain | flat (within 1 AP) |",
             "|---|---|---|---|---|---|"]
    baselines = {c["baseline"] for c in per_config.values() if c["baseline"]}
    for name, c in per_config.items():
        if name not in baselines:
            continue
        for r in c["runs"]:
            if not finished(r):
                continue
            p = plateau(r.get("ap_curve", []), max_iter=max_iter, first_drop=first_drop)
            if p is None:
                lines.append(f"| {c['label']} | {r['seed']} | — | — | — | unfinished |")
                continue
            verdict = "yes" if p["flat"] else "no" if p["learning"] else "no (not learning yet)"
            lines.append(f"| {c['label']} | {r['seed']} | {p['ap']:.1f} (it {p['iteration']}) | "
                         f"{p['earlier_ap']:.1f} (it {p['earlier_iteration']}) | {p['gain']:+.1f} | {verdict} |")
    return "\n".join(lines)


def _line_style(pair: Optional[str]) -> str:
    """A method of a default pair is solid; a control (a ``*_controls`` pair) dashed, an ablation
    (a ``*_ablations`` pair) dash-dot, so that the two kinds of extra row stay apart in one panel."""
    pair = pair or ""
    return "--" if pair.endswith("_controls") else "-." if pair.endswith("_ablations") else "-"


SEED_MARKERS = ("o", "s", "^", "D", "v")


def _seed_marker(seed: int) -> str:
    """One marker per seed, so that two seeds of one method (same colour and line) stay apart."""
    return SEED_MARKERS[seed % len(SEED_MARKERS)]


KIND_ORDER = {"-": 0, "--": 1, "-.": 2}  # by line style: default pairs' methods, controls, ablations
PANEL_CONFIGS = 9  # configs per panel of pairs.png, the baseline included: more and the legend outgrows the panel


def pair_panels(per_config: Dict[str, dict]) -> List[Tuple[str, str, List[dict]]]:
    """(title, baseline, configs) per panel of pairs.png: one panel per baseline, split evenly into
    several when it holds more than PANEL_CONFIGS configs, each with the baseline first. The others
    keep their order after a stable sort that puts a default pair's methods before controls and
    ablations, so the first panel shows the pair itself. Configs without an AP curve (unfinished runs,
    evaluation-only rows) are left out, and so is a baseline whose configs have none."""
    groups: Dict[str, List[dict]] = {}
    for name, c in per_config.items():
        groups.setdefault(c["baseline"] or name, []).append(dict(c, name=name))
    panels = []
    for baseline, configs in groups.items():
        configs = [c for c in configs if any(r.get("ap_curve") for r in c["runs"])]  # a line to draw
        if not configs:
            continue
        base = [c for c in configs if c["name"] == baseline]
        others = sorted((c for c in configs if c["name"] != baseline), key=lambda c: KIND_ORDER[_line_style(c["pair"])])
        count = max(1, math.ceil(len(others) / (PANEL_CONFIGS - len(base))))
        size = math.ceil(len(others) / count) if others else 0
        label = per_config[baseline]["label"] if baseline in per_config else baseline
        for k in range(count):
            title = f"against {label}" + (f" ({k + 1} of {count})" if count > 1 else "")
            panels.append((title, baseline, base + others[k * size:(k + 1) * size]))
    return panels


def plot_pairs(per_config: Dict[str, dict], path: str, *, title: str, steps: Sequence[int] = ()) -> List[str]:
    """AP over iterations, panels from :func:`pair_panels` (up to three a row): the baseline (black),
    its methods (solid) and controls (dashed) and ablations (dash-dot), one line per run; dotted
    vertical lines at the lr drops. Returns the panel titles (none and no file when no run has an
    AP curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = pair_panels(per_config)
    if not panels:
        return []
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.6 * nrows), squeeze=False)
    legends = []
    for ax, (panel_title, baseline, configs) in zip(axes.flat, panels):
        colors = distinct_colors(len(configs))
        for i, c in enumerate(configs):
            is_base = c["name"] == baseline
            for r in c["runs"]:
                if not r.get("ap_curve"):
                    continue
                ax.plot(*zip(*r["ap_curve"]), marker=_seed_marker(r["seed"]), markersize=3.5,
                        color="black" if is_base else colors[i],
                        linestyle=_line_style(c["pair"]),
                        linewidth=2 if is_base else 1.3,
                        # wrapped: two columns of long control labels would run into the next panel
                        label=textwrap.fill(f"{c['label']} (seed {r['seed']})", 34))
        for s in steps:
            ax.axvline(s, color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="iteration", ylabel="COCO AP (test set)", title=panel_title)
        ax.grid(alpha=0.3)
        # Below the panel: rising curves leave no corner of the axes free once a panel holds
        # several methods and controls.
        legend = ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
        # Out of tight_layout: a tall legend would otherwise shrink the panel until the legend, placed
        # in axes units, runs into the x label; savefig takes it in as an extra artist.
        legend.set_in_layout(False)
        legends.append(legend)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    heading = fig.suptitle(title + " (dotted: lr x0.1; dashed: controls; dash-dot: ablations; markers: seed 0 circle,"
                 " seed 1 square)", fontsize=10)
    fig.tight_layout()
    if nrows > 1:  # room under each row for its legends, which tight_layout leaves out
        fig.subplots_adjust(hspace=1.1)
    fig.savefig(path, dpi=110, bbox_inches="tight", bbox_extra_artists=legends + [heading])
    plt.close(fig)
    return [t for t, _, _ in panels]


def machine_description(device: str, omp_num_threads: Sequence[str] = ()) -> str:
    """The machine, and the ``OMP_NUM_THREADS`` the training processes ran with (recorded per run:
    the report may be written by another process, e.g. ``--no-train``, with other settings)."""
    cpu = platform.processor() or platform.machine()
    threads = ", ".join(sorted(set(omp_num_threads))) or "unrecorded"
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} (training processes: OMP_NUM_THREADS={threads})"
    if device == "cuda" and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def optimizer_description(config_path: str) -> str:
    """``SGD 0.01`` etc. as the preset sets it (read from the run's config)."""
    cfg = load_config(config_path)
    text = f"{optimizer_family(cfg.optimizer)} {cfg.optimizer.lr:g}"
    if cfg.optimizer.params.get("lr_factor_func") is not None:
        text += f", backbone x{cfg.optimizer.params.lr_factor_func.factor:g}"
    if cfg.train.clip_grad.enabled:
        text += f", clip {cfg.train.clip_grad.clip_value:g}"
    return text



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
        # the runs that trained (an evaluation variant trains nothing and records no threads)
        preset.device, [t for c in per_config.values() for r in c["runs"] if finished(r) and "wall_s" in r
                        for t in r.get("omp_num_threads", ["unrecorded"])]
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
    first_drop = min(preset.steps) if preset.steps else None
    table += ("\n\nPlateau check of the baselines: the AP at the last evaluation before the first lr drop against the "
              "AP a quarter of the schedule earlier.\n\n"
              + plateau_table(per_config, max_iter=preset.max_iter, first_drop=first_drop))
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
              for c in per_config.values() for r in c["runs"] if finished(r)]
    plot_curves(curves, os.path.join(output, "curves.png"),
                title=f"preset {preset.name}, {args.train_dataset} -> {args.test_dataset}, seeds {seeds}")
    plot_pairs(per_config, os.path.join(output, "pairs.png"), steps=preset.steps,
               title=f"preset {preset.name}, {args.train_dataset} -> {args.test_dataset}")
    print(header + "\n\n" + table)
    print(f"\nwrote {output}/results.md, results.json, curves.png, pairs.png")
    return report