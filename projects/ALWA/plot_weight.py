#!/usr/bin/env python
"""Plot ALWA's weight α (``alwa_weight``) over a training run from its metrics.json.

    python train_net.py --config-file configs/quick_schedules/retinanet_alwa_instant_test.py \
        train.output_dir=output/alwa_it
    python projects/ALWA/plot_weight.py output/alwa_it/metrics.json

writes ``projects/ALWA/alwa_weight.png`` (``--out`` to change): α per iteration (the weight
multiplied into that iteration's classification loss), vertical lines at the window
boundaries (every ``--period`` iterations), and, on a second axis, the weighted losses the
trainer logged (Detectron2 logs their 20-iteration median). Needs matplotlib only.
Run the instant test with ``train.log_period=1`` (its default) so that every iteration
is in metrics.json.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_series(metrics_json, keys):
    """{key: ([iterations], [values])} from a Detectron2 metrics.json (one JSON object per line).

    A resumed run appends to the file, so a later line for an iteration replaces an earlier one.
    """
    rows = {}
    with open(metrics_json) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if "iteration" in rec:
                rows.setdefault(rec["iteration"], {}).update(rec)
    out = {}
    for k in keys:
        its = sorted(i for i, r in rows.items() if k in r)
        out[k] = (its, [rows[i][k] for i in its])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics_json")
    p.add_argument("--out", default=os.path.join(HERE, "alwa_weight.png"))
    p.add_argument("--period", type=int, default=10, help="ALWA window C (vertical lines); 0 for none")
    p.add_argument("--cls-key", default="loss_cls")
    p.add_argument("--reg-key", default="loss_box_reg")
    p.add_argument("--title", default="ALWA_2 on the RetinaNet instant test (synthetic shapes, C = 10)")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_series(args.metrics_json, ["alwa_weight", args.cls_key, args.reg_key])
    its, alpha = series["alwa_weight"]
    if not its:
        sys.exit(f"{args.metrics_json} has no 'alwa_weight': was the model built with with_alwa(...)?")
    fig, ax = plt.subplots(figsize=(8, 4.4), dpi=120)
    ax.step(its, alpha, where="post", color="C3", lw=2, label="α (alwa_weight)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("α", color="C3")
    ax.set_ylim(0, max(1.05, max(alpha) * 1.05))
    if args.period > 0:
        for x in range(args.period, its[-1] + 1, args.period):
            ax.axvline(x - 0.5, color="0.85", lw=0.8, zorder=0)
    ax2 = ax.twinx()
    for key, color in ((args.cls_key, "C0"), (args.reg_key, "C2")):
        k_its, vals = series[key]
        if k_its:
            ax2.plot(k_its, vals, color=color, lw=1, alpha=0.8, label=f"{key} (weighted, 20-it median)")
    ax2.set_ylabel("logged loss")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8, frameon=False)
    ax.set_title(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}: {len(its)} iterations, α from {alpha[0]:.4g} to {alpha[-1]:.4g}, "
          f"{len(set(alpha))} distinct values")


if __name__ == "__main__":
    main()
