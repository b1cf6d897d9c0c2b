#!/usr/bin/env python
"""Time the ATSS / EATSS assignment alone against the number of ground-truth boxes.

    python benchmarks/assignment_scaling.py --boxes 10 100 1000 --size 800 1333

Priors: the ~22k square anchors of an 800x1333 input (5 levels, strides 8..128, side 8·stride), as
``ATSS`` / ``HCRALATSS`` assign on. Boxes: random, sides 8-200 px, inside the image. Prints the median
time per call and per box; "growth" is the time ratio to the previous box count divided by the box
ratio (<= 1 means no faster than linear). The peak RSS line says that 1,000 boxes fit (the (priors x
GTs) matrices are built ``--chunk`` GTs at a time).
"""
import argparse
import os
import platform
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alignment_det.assigners.atss import atss_assign, square_anchor_grid  # noqa: E402
from harness import random_boxes  # noqa: E402  the boxes compare.py's batches hold


def time_assign(anchors, counts, boxes, *, num_extra, chunk, iters, warmup, device):
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        atss_assign(anchors, counts, boxes, num_extra=num_extra, gt_chunk_size=chunk)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boxes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--extra", type=int, default=3, help="EATSS l")
    p.add_argument("--chunk", type=int, default=256, help="GTs per chunk")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    height, width = args.size
    anchors, counts = square_anchor_grid(height, width)
    anchors = anchors.to(device)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}; {anchors.shape[0]} priors ({height}x{width}), "
        f"chunk {args.chunk}, median of {args.iters}"
    )
    print("| boxes | ATSS (ms) | EATSS l=%d (ms) | EATSS per box (ms) | growth |" % args.extra)
    print("|---|---|---|---|---|")
    prev = None
    for n in args.boxes:
        boxes = random_boxes(n, height, width, torch.Generator().manual_seed(n)).to(device)
        kw = dict(chunk=args.chunk, iters=args.iters, warmup=args.warmup, device=device)
        t_atss = time_assign(anchors, counts, boxes, num_extra=0, **kw)
        t_eatss = time_assign(anchors, counts, boxes, num_extra=args.extra, **kw)
        growth = "" if prev is None else f"{(t_eatss / prev[1]) / (n / prev[0]):.2f}"
        print(f"| {n} | {t_atss * 1e3:.1f} | {t_eatss * 1e3:.1f} | {t_eatss * 1e3 / n:.3f} | {growth} |")
        prev = (n, t_eatss)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
