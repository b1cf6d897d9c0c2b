#!/usr/bin/env python
"""Time a method against its baseline, same process, same batches; prints medians and ratios.

    python benchmarks/compare.py configs/retinanet_R50.py configs/mal_R50.py \
        --boxes 10 100 --size 512 640 --iters 10

Per-config overrides: --opts-a key=value ... / --opts-b key=value ...
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import compare, report  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("method")
    p.add_argument("--opts-a", nargs="*", default=[], help="overrides for the baseline")
    p.add_argument("--opts-b", nargs="*", default=[], help="overrides for the method")
    p.add_argument("--boxes", type=int, nargs="+", default=[10], help="ground-truth boxes per image")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[512, 640], metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    p.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    args = p.parse_args(argv)
    names = (os.path.basename(args.baseline), os.path.basename(args.method))
    for n in args.boxes:
        timings = compare(
            [args.baseline, args.method], overrides=[args.opts_a, args.opts_b], names=names,
            batch_size=args.batch, height=args.size[0], width=args.size[1], num_boxes=n,
            iters=args.iters, warmup=args.warmup, device=args.device, modes=args.modes,
        )
        print(report(timings, title=f"\n## {n} boxes/image, batch {args.batch}, {args.size[0]}x{args.size[1]}, {args.device}"))


if __name__ == "__main__":
    main()
