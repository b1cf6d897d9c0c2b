#!/usr/bin/env python
"""Time a method against its baseline, same process, same batches; prints medians, peak memory and ratios.

    python benchmarks/compare.py configs/retinanet_R50.py configs/mal_R50.py \
        --boxes 10 100 --size 512 640 --iters 10

    # how the cost grows with the number of boxes: a PNG of train-step time and peak memory
    python benchmarks/compare.py configs/retinanet_R50.py configs/mal_R50.py --modes train \
        --boxes 10 100 300 1000 --size 800 1333 --batch 1 --iters 3 --warmup 1 \
        --plot mal_boxes.png --json mal_boxes.json

Per-config overrides: --opts-a key=value ... / --opts-b key=value ...
Peak memory is that of one step above the memory in use before it (see benchmarks/harness.py):
CUDA ``max_memory_allocated``; on a Linux CPU the peak resident memory of the process. Step times
come from ``torch.cuda.Event`` records on CUDA and ``time.perf_counter`` on a CPU, after --warmup
untimed steps.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report, time_configs  # noqa: E402


def sweep_rows(results):
    """[(boxes, [Timing, ...]), ...] -> JSON-able rows, one per (boxes, config)."""
    return [
        {
            "boxes": n, "config": t.name,
            "train_s": t.train_s, "infer_s": t.infer_s, "train_bytes": t.train_bytes, "infer_bytes": t.infer_bytes,
            "train_median_s": t.train_median, "train_peak_bytes": t.train_peak,
            "infer_median_s": t.infer_median, "infer_peak_bytes": t.infer_peak,
        }
        for n, timings in results
        for t in timings
    ]


def plot_sweep(rows, path: str, *, title: str = "") -> None:
    """Three panels against boxes per image (log scale): median train-step time, peak train-step
    memory, and the ratio of each config to the first (time and memory), with the 1.1x target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["config"] for r in rows))
    boxes = sorted({r["boxes"] for r in rows})
    value = {(r["config"], r["boxes"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, style in zip(names, ("o-", "s--", "^-.", "d:")):
        axes[0].plot(boxes, [value[name, n]["train_median_s"] for n in boxes], style, label=name)
        axes[1].plot(boxes, [value[name, n]["train_peak_bytes"] / 2**20 for n in boxes], style, label=name)
    base = names[0]
    for name in names[1:]:
        axes[2].plot(boxes, [value[name, n]["train_median_s"] / value[base, n]["train_median_s"] for n in boxes], "o-", label=f"{name}: time")
        axes[2].plot(boxes, [value[name, n]["train_peak_bytes"] / value[base, n]["train_peak_bytes"] for n in boxes], "s--", label=f"{name}: peak memory")
    axes[2].axhline(1.1, color="grey", lw=0.8, ls=":", label="1.1x target (memory)")
    axes[2].axhline(1.0, color="black", lw=0.5)
    for ax, ylabel in zip(axes, ("train step, median (s)", "train step peak memory (MiB)", f"ratio to {base}")):
        ax.set_xscale("log")
        ax.set_xticks(boxes)
        ax.set_xticklabels([str(n) for n in boxes])
        ax.set_xlabel("ground-truth boxes per image")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(bottom=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("method")
    p.add_argument("--opts-a", nargs="*", default=[], help="overrides for the baseline")
    p.add_argument("--opts-b", nargs="*", default=[], help="overrides for the method")
    p.add_argument("--boxes", type=int, nargs="+", default=[10], help="ground-truth boxes per image (several: a sweep)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[512, 640], metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    p.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    p.add_argument("--plot", default=None, help="PNG of train time / peak memory against --boxes (needs 'train' in --modes)")
    p.add_argument("--json", default=None, help="write every measurement to this JSON file")
    args = p.parse_args(argv)
    if args.plot and "train" not in args.modes:
        p.error("--plot draws training steps: keep 'train' in --modes")
    names = (os.path.basename(args.baseline), os.path.basename(args.method))
    setting = f"batch {args.batch}, {args.size[0]}x{args.size[1]}, {args.device}"
    results = []
    for n in args.boxes:
        timings = time_configs(
            [args.baseline, args.method], overrides=[args.opts_a, args.opts_b], names=names,
            batch_size=args.batch, height=args.size[0], width=args.size[1], num_boxes=n,
            iters=args.iters, warmup=args.warmup, device=args.device, modes=args.modes,
        )
        results.append((n, timings))
        print(report(timings, title=f"\n## {n} boxes/image, {setting}"), flush=True)
    rows = sweep_rows(results)
    if args.json:
        with open(args.json, "w") as f:
            timer = "torch.cuda.Event" if args.device.startswith("cuda") else "time.perf_counter"
            json.dump({"setting": setting, "timer": timer, "iters": args.iters, "warmup": args.warmup, "rows": rows}, f, indent=1)
    if args.plot:
        plot_sweep(rows, args.plot, title=f"{names[1]} vs {names[0]}: {setting}, medians of {args.iters} steps")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
