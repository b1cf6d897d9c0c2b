#!/usr/bin/env python
"""Plot training curves from one or several Detectron2 ``metrics.json`` files, runs overlaid.

    python tools/plot_metrics.py output/mal_R50 output/retinanet_R50 --output curves.png
    python tools/plot_metrics.py a/metrics.json b/metrics.json --labels MAL RetinaNet \
        --keys total_loss "loss_*" "bbox/AP*" --output curves.png

Each argument is a ``metrics.json`` or the folder holding one; a run is named after its folder
unless ``--labels`` are given. One panel per key, value against iteration, one line per run.

Default keys (those present in at least one run): ``total_loss``, every ``loss_*``, ``lr``, the COCO
summary ``bbox/AP``, ``bbox/AP50``, ``bbox/AP75``, ``bbox/APs``, ``bbox/APm``, ``bbox/APl``, and the
methods' own logged quantities: ``mal/*``, ``date/*``, ``alwa_weight``, ``obj_*``, ``align/*``,
``hcral/*``. ``--keys`` takes names or shell-style patterns (``"loss_*"``).

How the file is read: ``alignment_det.utils.metrics_file`` (a resumed run's curve is the one of the
run that continued); evaluations, lines of their own, are drawn as markers. Non-finite values (an AP
of ``NaN`` when nothing was detected) are left out. ``lr`` is drawn on a
log scale.
"""
import argparse
import fnmatch
import math
import os
import sys
from typing import List, Optional, Sequence

from alignment_det.utils.metrics_file import Series, metrics_path, read_metrics

__all__ = ["DEFAULT_KEYS", "main", "metrics_path", "plot_runs", "read_metrics", "run_label", "select_keys"]

DEFAULT_KEYS = (
    "total_loss", "loss_*", "lr",
    "bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/APm", "bbox/APl",
    "mal/*", "date/*", "alwa_weight", "obj_*", "align/*", "hcral/*",
)
# Series with at most this many points get markers (evaluations, short runs).
MARKER_MAX_POINTS = 30
# Drawn on a log scale (when positive): runs' learning rates often differ by 10x or more (SGD / AdamW).
LOG_SCALE_KEYS = ("lr",)


def select_keys(runs: Sequence[Series], patterns: Sequence[str]) -> List[str]:
    """Keys of any run matching ``patterns``, in pattern order (then alphabetical within a pattern)."""
    present = sorted({k for run in runs for k in run})
    keys: List[str] = []
    for pattern in patterns:
        for k in present:
            if fnmatch.fnmatchcase(k, pattern) and k not in keys:
                keys.append(k)
    return keys


def plot_runs(runs: Sequence[Series], labels: Sequence[str], keys: Sequence[str], path: str, *, ncols: int = 3) -> None:
    """One panel per key, every run that has the key drawn in it (same colour per run throughout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, len(keys)))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.4 * nrows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys):
        for r, (run, label) in enumerate(zip(runs, labels)):
            if key not in run:
                continue
            its, values = run[key]
            style = "o-" if len(its) <= MARKER_MAX_POINTS else "-"
            ax.plot(its, values, style, color=colours[r % len(colours)], label=label, lw=1.2, ms=3.5)
        if key in LOG_SCALE_KEYS and all(min(run[key][1]) > 0 for run in runs if key in run):
            ax.set_yscale("log")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_label(path: str) -> str:
    """A run's name: the folder holding its metrics.json."""
    return os.path.basename(os.path.dirname(os.path.abspath(metrics_path(path)))) or path


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", nargs="+", help="metrics.json files or run output folders")
    p.add_argument("--keys", nargs="+", default=None, help="keys or patterns to plot (default: see above)")
    p.add_argument("--labels", nargs="+", default=None, help="one name per run (default: folder names)")
    p.add_argument("--output", default="metrics.png", help="PNG to write")
    p.add_argument("--ncols", type=int, default=3)
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.metrics):
        p.error(f"{len(args.labels)} --labels for {len(args.metrics)} runs")
    try:
        runs = [read_metrics(m) for m in args.metrics]
    except (FileNotFoundError, ValueError) as e:
        print(f"plot_metrics: {e}", file=sys.stderr)
        return 2
    labels = args.labels or [run_label(m) for m in args.metrics]
    patterns = args.keys or DEFAULT_KEYS
    keys = select_keys(runs, patterns)
    if args.keys:
        for pattern in args.keys:
            if not any(fnmatch.fnmatchcase(k, pattern) for k in keys):
                print(f"plot_metrics: no run has a key matching {pattern!r}", file=sys.stderr)
    if not keys:
        print(f"plot_metrics: nothing to plot: no key of {list(patterns)} in these runs", file=sys.stderr)
        return 2
    plot_runs(runs, labels, keys, args.output, ncols=args.ncols)
    print(f"wrote {args.output}: {len(keys)} panels ({', '.join(keys)}) for {len(runs)} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
