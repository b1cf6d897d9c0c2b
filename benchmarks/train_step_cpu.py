#!/usr/bin/env python
"""Step cost of two configs in CPU time: training step, what follows the head, or inference.

    python benchmarks/train_step_cpu.py configs/atss_R50_1x.py configs/hcral_atss_R50_1x.py \
        --boxes 10 100 --threads 1 --scope full after_head

``compare.py`` times steps by the wall clock, which on a shared machine measures the other jobs as
much as the model. This script takes the same synthetic batches (``harness.synthetic_batch``),
alternates the two models (A, B, A, B, ...) and records, besides the wall time, the process's CPU time
(``time.process_time``): with ``--threads 1`` that is the work the step did, which other jobs slow
down far less than the wall clock.

Scopes:
* ``full``: forward + backward of the whole model (``model(batch)``, as ``compare.py``'s train step);
* ``after_head``: the backbone and head run once per batch (first model's weights, outputs detached),
  then only ``model.forward_training(...)`` (assignment, losses) and the backward of its losses into
  the head outputs are timed. The two configs must share the head's output layout (e.g. ATSS /
  HCRALATSS, RetinaNet / HCRALRetinaNet);
* ``infer``: eval-mode forward under ``no_grad`` (as ``compare.py``'s inference step).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch
from detectron2.utils.events import EventStorage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import build_model, synthetic_batch  # noqa: E402


def _full_step(model, batch):
    t0, c0 = time.perf_counter(), time.process_time()
    losses = model(batch)
    sum(losses.values()).backward()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    model.zero_grad(set_to_none=True)
    return dt, dc


@torch.no_grad()
def _infer_step(model, inputs):
    model.eval()
    t0, c0 = time.perf_counter(), time.process_time()
    model(inputs)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    model.train()
    return dt, dc


def _after_head_step(model, images, features, predictions, gt_instances):
    preds = [[p.detach().requires_grad_(True) for p in level] for level in predictions]
    t0, c0 = time.perf_counter(), time.process_time()
    losses = model.forward_training(images, features, preds, gt_instances)
    sum(losses.values()).backward()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("method")
    p.add_argument("--boxes", type=int, nargs="+", default=[10, 100])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[512, 640], metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1: CPU time = work)")
    p.add_argument("--scope", nargs="+", default=["full", "after_head"], choices=["full", "after_head", "infer"])
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = []
    for cfg in (args.baseline, args.method):
        m, k = build_model(cfg, [], "cpu", 0)
        models.append((m.train(), k))
    names = [os.path.basename(c) for c in (args.baseline, args.method)]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for n in args.boxes:
        batch = synthetic_batch(
            batch_size=args.batch, height=args.size[0], width=args.size[1], num_boxes=n,
            num_classes=min(k for _, k in models), seed=n,
        )
        for scope in args.scope:
            if scope == "full":
                run = lambda m: _full_step(m, batch)  # noqa: E731
            elif scope == "infer":
                inputs = [{k: v for k, v in d.items() if k != "instances"} for d in batch]
                run = lambda m: _infer_step(m, inputs)  # noqa: E731
            else:
                first = models[0][0]
                with torch.no_grad():
                    images = first.preprocess_image(batch)
                    feats = first.backbone(images.tensor)
                    features = [feats[f] for f in first.head_in_features]
                    predictions = first.head(features)
                gts = [x["instances"] for x in batch]
                run = lambda m: _after_head_step(m, images, features, predictions, gts)  # noqa: E731
            wall, cpu = [[], []], [[], []]
            with EventStorage(0):
                for i in range(args.warmup + args.iters):
                    for j, (m, _) in enumerate(models):
                        dt, dc = run(m)
                        if i >= args.warmup:
                            wall[j].append(dt)
                            cpu[j].append(dc)
            _report(names, wall, cpu, f"{n} boxes/image, batch {args.batch}, {args.size[0]}x{args.size[1]}, {scope} step, {args.iters} reps")


def _report(names, wall, cpu, title):
    print(f"\n## {title}")
    print("| config | wall median (ms) | wall min (ms) | CPU median (ms) | CPU min (ms) | ratio: wall medians | ratio: CPU medians |")
    print("|---|---|---|---|---|---|---|")
    w0, c0 = statistics.median(wall[0]), statistics.median(cpu[0])
    for name, w, c in zip(names, wall, cpu):
        wm, cm = statistics.median(w), statistics.median(c)
        print(f"| {name} | {wm * 1e3:.1f} | {min(w) * 1e3:.1f} | {cm * 1e3:.1f} | {min(c) * 1e3:.1f} | {wm / w0:.3f} | {cm / c0:.3f} |")
    print(f"difference of medians: wall {(statistics.median(wall[1]) - w0) * 1e3:+.1f} ms, CPU {(statistics.median(cpu[1]) - c0) * 1e3:+.1f} ms per step")

if __name__ == "__main__":
    main()
