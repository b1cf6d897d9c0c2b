#!/usr/bin/env python
"""Measure how well detection scores follow localisation quality, for one model or several.

From a config and its checkpoint (runs inference on the config's test set, and records the
candidates of the final NMS for the NMS-misranking figures)::

    python tools/analyze_alignment.py --model configs/mal_R50.py output/mal_R50/model_final.pth \\
        --model configs/retinanet_R50.py output/retinanet_R50/model_final.pth --output alignment/

or from saved detections (``coco_instances_results.json``, as COCOEvaluator writes) and the COCO
ground-truth json (no NMS misranking: the candidates before NMS are not in the file)::

    python tools/analyze_alignment.py --results run/coco_instances_results.json \\
        --gt datasets/coco/annotations/instances_val2017.json --output alignment/

Writes ``alignment_report.json`` (every metric of every model, see
``alignment_det/evaluation/alignment_metrics.py``) and three plots, models overlaid:
``score_iou_hexbin.png`` (score against IoU with the best same-class ground truth, one panel per
model), ``reliability.png`` (reliability diagrams at IoU 0.5 and 0.75) and ``score_by_iou.png``
(mean score per IoU bin, and mean IoU per score decile). Trailing ``key=value`` overrides apply to
every ``--model`` config (e.g. ``model.test_score_thresh=0.0``).
"""
import argparse
import json
import math
import os
import sys
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np

PLOTS = ("score_iou_hexbin.png", "reliability.png", "score_by_iou.png")


# ----------------------------------------------------------------------------- records
def records_from_coco_json(results_path: str, gt_path: str, *, progress: bool = True) -> List[dict]:
    """Per-image records (``alignment_metrics`` format, XYXY boxes) from COCO result and ground-truth
    jsons; every ground-truth image is a record, with or without detections."""
    from tqdm import tqdm

    with open(gt_path) as f:
        gt = json.load(f)
    if "annotations" not in gt or "images" not in gt:
        raise ValueError(f"{gt_path}: not a COCO ground-truth json (needs 'images' and 'annotations')")
    with open(results_path) as f:
        dets = json.load(f)
    if not isinstance(dets, list):
        raise ValueError(f"{results_path}: a COCO results file is a json list of detections")
    by_image: Dict[int, dict] = OrderedDict(
        (im["id"], {"image_id": im["id"], "height": im.get("height"), "width": im.get("width"), "gt": [], "det": []})
        for im in gt["images"]
    )
    for a in gt["annotations"]:
        by_image[a["image_id"]]["gt"].append(a)
    unknown = 0
    for d in dets:
        if d["image_id"] in by_image:
            by_image[d["image_id"]]["det"].append(d)
        else:
            unknown += 1
    if unknown:
        raise ValueError(f"{results_path}: {unknown} detections name images absent from {gt_path}; wrong ground truth?")

    def xyxy(items):
        b = np.asarray([x["bbox"] for x in items], dtype=np.float64).reshape(-1, 4)
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)

    records = []
    for item in tqdm(by_image.values(), desc="images", unit="img", disable=not progress):
        records.append({
            "image_id": item["image_id"], "height": item["height"], "width": item["width"],
            "gt_boxes": xyxy(item["gt"]), "gt_classes": np.asarray([a["category_id"] for a in item["gt"]], np.int64),
            "gt_crowd": np.asarray([bool(a.get("iscrowd", 0)) for a in item["gt"]], bool),
            "det_boxes": xyxy(item["det"]), "det_scores": np.asarray([d["score"] for d in item["det"]], np.float64),
            "det_classes": np.asarray([d["category_id"] for d in item["det"]], np.int64),
        })
    return records


def records_from_model(config_file: str, checkpoint: str, opts: Sequence[str], *, max_images: int = 0,
                       progress: bool = True) -> List[dict]:
    """Run the config's test loader through the model with :class:`AlignmentEvaluator` collecting the
    records (detections, ground truth, NMS misranking per ground truth)."""
    import torch
    from tqdm import tqdm

    from alignment_det.engine import Trainer, build_eval_model
    from alignment_det.config import load_config
    from alignment_det.evaluation.alignment_evaluator import AlignmentEvaluator

    cfg = load_config(config_file, list(opts))
    loader = Trainer.build_test_loader(cfg)  # first: it registers/writes the dataset the evaluator reads
    model = build_eval_model(cfg, checkpoint)
    evaluator = AlignmentEvaluator(cfg.dataloader.test.dataset.names, distributed=False)
    evaluator.reset()
    total = min(len(loader.dataset), max_images) if max_images else len(loader.dataset)
    try:
        with torch.no_grad(), tqdm(total=total, desc=os.path.basename(config_file), unit="img",
                                   disable=not progress) as bar:
            done = 0
            for inputs in loader:
                evaluator.process(inputs, model(inputs))
                done += len(inputs)
                bar.update(len(inputs))
                if max_images and done >= max_images:
                    break
    finally:
        evaluator.stop_recording()
    return evaluator.records()


# ----------------------------------------------------------------------------- plots
def _colors(n):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def plot_hexbin(models: "OrderedDict[str, dict]", path: str) -> None:
    """Score against IoU with the best same-class ground truth, one hexbin panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(models)
    # One score range for every panel (so models compare), up to the highest score shown.
    top = max([float(m["pairs"]["scores"].max()) for m in models.values() if len(m["pairs"]["scores"])] + [1e-3])
    ymax = min(1.0, float(np.ceil(top * 1.05 * 20) / 20))
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 4.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (name, m) in zip(axes.flat, models.items()):
        pairs, rep = m["pairs"], m["report"]
        if len(pairs["scores"]):
            hb = ax.hexbin(pairs["ious"], pairs["scores"], gridsize=25, extent=(0, 1, 0, ymax), bins="log",
                           mincnt=1, cmap="viridis")
            fig.colorbar(hb, ax=ax, label="detections (log)")
        corr = rep["correlation"]["all"]
        ax.set_title(f"{name}\nSpearman {corr['spearman']:.3f} (IoU>={rep['correlation_params']['min_iou']:g}, "
                     f"n={int(corr['n'])})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, ymax)
        ax.set_xlabel("IoU with best same-class ground truth")
        ax.set_ylabel("score")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(models: "OrderedDict[str, dict]", path: str) -> None:
    """Reliability diagrams (TP rate per score bin) at IoU 0.5 and 0.75, models overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ious = list(next(iter(models.values()))["report"]["calibration"])
    fig, axes = plt.subplots(1, len(ious), figsize=(4.8 * len(ious), 4.4), squeeze=False)
    for ax, t in zip(axes[0], ious):
        ax.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
        for color, (name, m) in zip(_colors(len(models)), models.items()):
            cal = m["report"]["calibration"][t]
            edges = np.asarray(cal["edges"])
            centres = (edges[:-1] + edges[1:]) / 2
            acc = np.asarray(cal["accuracy"], dtype=float)
            ok = ~np.isnan(acc)
            ax.plot(centres[ok], acc[ok], "o-", color=color, label=f"{name} (ECE {cal['ece']:.3f})")
        ax.set_title(f"reliability, true positive = IoU >= {t}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("score (bin centre)")
        ax.set_ylabel(f"fraction of true positives at IoU {t}")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_score_by_iou(models: "OrderedDict[str, dict]", path: str) -> None:
    """Mean score per IoU bin, and mean IoU per score decile, models overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for color, (name, m) in zip(_colors(len(models)), models.items()):
        rep = m["report"]
        b = rep["score_by_iou_bin"]
        edges = np.asarray(b["edges"])
        mean = np.asarray(b["mean"], dtype=float)
        ok = ~np.isnan(mean)
        ax1.plot(((edges[:-1] + edges[1:]) / 2)[ok], mean[ok], "o-", color=color, label=name)
        d = rep["iou_by_score_decile"]
        iou = np.asarray(d["mean"], dtype=float)
        ok = ~np.isnan(iou)
        ax2.plot(np.arange(len(iou))[ok] + 1, iou[ok], "s-", color=color, label=name)
    ax1.set_xlabel("IoU with best same-class ground truth (bin centre)")
    ax1.set_ylabel("mean score")
    ax1.set_title("score per IoU bin (rising = aligned)", fontsize=10)
    ax1.set_xlim(0, 1)
    ax2.set_xlabel("score decile (1 = lowest scores)")
    ax2.set_ylabel("mean IoU")
    ax2.set_title("IoU per score decile (rising = aligned)", fontsize=10)
    ax2.set_xticks(range(1, 11))
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def analyze(models: "OrderedDict[str, List[dict]]", output: str, *, tide: bool = False) -> dict:
    """Reports of every model's records, the json and the plots in ``output``; returns the reports."""
    from alignment_det.evaluation.alignment_metrics import evaluate_alignment, flat_metrics, score_iou_pairs

    os.makedirs(output, exist_ok=True)
    results = OrderedDict()
    for name, records in models.items():
        report = evaluate_alignment(records)
        if tide:
            from alignment_det.evaluation.tide import tide_errors

            report["tide"] = tide_errors(records)
        results[name] = {"report": report, "pairs": score_iou_pairs(records)}
    with open(os.path.join(output, "alignment_report.json"), "w") as f:
        json.dump(OrderedDict((n, OrderedDict(metrics=flat_metrics(r["report"]), report=r["report"]))
                              for n, r in results.items()), f, indent=1)
    plot_hexbin(results, os.path.join(output, PLOTS[0]))
    plot_reliability(results, os.path.join(output, PLOTS[1]))
    plot_score_by_iou(results, os.path.join(output, PLOTS[2]))
    return results


def _default_name(path: str) -> str:
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return f"{parent}/{os.path.splitext(os.path.basename(path))[0]}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs=2, action="append", default=[], metavar=("CONFIG", "CHECKPOINT"),
                   help="a config and its weights (repeat for several models)")
    p.add_argument("--results", action="append", default=[], help="a coco_instances_results.json (repeatable)")
    p.add_argument("--gt", help="COCO ground-truth json of --results")
    p.add_argument("--name", action="append", default=[], help="legend names, in the order of --model then --results")
    p.add_argument("--output", required=True, help="folder for alignment_report.json and the plots")
    p.add_argument("--tide", action="store_true", help='TIDE errors too (pip install "alignment_det[analysis]")')
    p.add_argument("--max-images", type=int, default=0, help="evaluate only the first N test images (0: all)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="key=value overrides for every --model config")
    args = p.parse_args(argv)
    if not args.model and not args.results:
        p.error("give at least one --model CONFIG CHECKPOINT or --results RESULTS_JSON (with --gt)")
    if args.results and not args.gt:
        p.error("--results needs --gt, the COCO ground-truth json the detections were made on")
    sources = [("model", m) for m in args.model] + [("results", r) for r in args.results]
    if args.name and len(args.name) != len(sources):
        p.error(f"{len(args.name)} --name for {len(sources)} models/results")
    if args.tide:
        from alignment_det.evaluation.tide import require_hotcoco

        require_hotcoco()
    names = args.name or [_default_name(src[0] if kind == "model" else src) for kind, src in sources]
    if len(set(names)) != len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    models = OrderedDict()
    for name, (kind, src) in zip(names, sources):
        if kind == "model":
            models[name] = records_from_model(src[0], src[1], args.opts, max_images=args.max_images,
                                              progress=not args.no_progress)
        else:
            models[name] = records_from_coco_json(src, args.gt, progress=not args.no_progress)
    results = analyze(models, args.output, tide=args.tide)
    from alignment_det.evaluation.alignment_metrics import flat_metrics

    for name, r in results.items():
        m = flat_metrics(r["report"])
        keys = ("spearman_all", "spearman_tp50", "ece50", "ece75", "olrp", "nms_misranked_share")
        print(f"{name}: " + ", ".join(f"{k}={m[k]:.4f}" for k in keys if k in m and not math.isnan(m[k])))
    print(f"wrote {os.path.join(args.output, 'alignment_report.json')} and {', '.join(PLOTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
