#!/usr/bin/env python
"""Parameters and FLOPs of a config's model at a given input size, training-only modules listed apart.

    python tools/analyze_model.py --config-file configs/date_F_R50_1x.py --size 800 1333
    python tools/analyze_model.py --config-file configs/mal_R50.py --size 800 1333 --depth 3 --no-flops

Parameters: the total, and those used at inference. Which modules run is observed, not assumed:
forward hooks on every module record which ones a training forward (random image, a few random
boxes) and an eval forward call. A module with parameters that the eval forward never calls is
listed as *training-only* when the training forward calls it (DATE's o2m branch: ``head.o2m_*``),
or as *never called* when neither does (dead weights). A module's own parameters count as used
when the module is called; a parent that reads a child's weights without calling the child would
be misreported (no module here does).

FLOPs: fvcore's count (as Detectron2's ``tools/analyze_model.py``: one fused multiply-add = one
flop, elementwise ops ignored) of the eval forward on a random (3, H, W) image at ``--size``, so
training-only branches are not counted. Data-dependent post-processing (NMS) counts for the
random weights' detections. Weights are random unless ``--checkpoint`` is given; parameter counts
do not depend on them.
"""
import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))


def _called_modules(model, inputs) -> Set[str]:
    """Names of the modules of ``model`` whose forward runs during ``model(inputs)``."""
    called: Set[str] = set()
    handles = [
        m.register_forward_pre_hook(lambda module, args, name=name: called.add(name))
        for name, m in model.named_modules()
    ]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    return called


def _top_uncalled(model, called: Set[str]) -> List[Tuple[str, str, int]]:
    """(name, class, parameters) of the outermost modules with parameters that are not in ``called``
    and none of whose descendants are."""
    out: List[Tuple[str, str, int]] = []
    for name, module in model.named_modules():
        if name in called or not name:
            continue
        if any(name.startswith(prefix + ".") for prefix, *_ in out):
            continue  # inside one already listed
        subtree = [n for n, _ in module.named_modules(prefix=name)]
        if any(n in called for n in subtree):
            continue  # partly used: its own uncalled children are listed separately
        n_params = sum(p.numel() for p in module.parameters())
        if n_params:
            out.append((name, type(module).__name__, n_params))
    return out


def parameter_usage(model, *, height: int, width: int, num_classes: int, seed: int = 0) -> Dict:
    """Which parameters a training forward and an eval forward use.

    Returns a dict with ``total``, ``inference`` (parameters of modules called in eval, plus the
    model's own), ``training_only`` and ``never_called``: lists of (module name, class, parameters).
    """
    import torch
    from detectron2.utils.events import EventStorage
    from harness import synthetic_batch

    batch = synthetic_batch(batch_size=1, height=height, width=width, num_boxes=3, num_classes=num_classes, seed=seed)
    was_training = model.training
    model.train()
    with EventStorage(0):
        train_called = _called_modules(model, batch)
    model.eval()
    with torch.no_grad():
        eval_called = _called_modules(model, [{"image": batch[0]["image"]}])
    model.train(was_training)
    uncalled = _top_uncalled(model, eval_called)

    def runs_in_training(name: str) -> bool:
        return any(n == name or n.startswith(name + ".") for n in train_called)

    training_only = [m for m in uncalled if runs_in_training(m[0])]
    never_called = [m for m in uncalled if not runs_in_training(m[0])]
    total = sum(p.numel() for p in model.parameters())
    unused = sum(n for _, _, n in training_only + never_called)
    return {"total": total, "inference": total - unused, "training_only": training_only, "never_called": never_called}


def inference_flops(model, *, height: int, width: int, seed: int = 0):
    """fvcore flop analysis (Detectron2's ``FlopCountAnalysis``) of the eval forward on a random image."""
    import torch
    from detectron2.utils.analysis import FlopCountAnalysis

    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8).float()
    model.eval()
    flops = FlopCountAnalysis(model, [{"image": image.to(next(model.parameters()).device)}])
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    flops.total()  # runs the trace
    return flops


def _fmt(n: float) -> str:
    return f"{n / 1e6:.3f} M" if n < 1e9 else f"{n / 1e9:.2f} G"


def _module_table(rows: Sequence[Tuple[str, str, int]]) -> str:
    if not rows:
        return "  (none)"
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {name:<{width}}  {cls:<16} {n:>12,}" for name, cls, n in rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"), help="input size (default 800 1333)")
    p.add_argument("--checkpoint", default=None, help="weights (optional: only NMS-dependent FLOPs change)")
    p.add_argument("--depth", type=int, default=2, help="module depth of the FLOP table")
    p.add_argument("--no-flops", action="store_true", help="parameters only (FLOPs trace the model: slower)")
    p.add_argument("--device", default="cpu")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    args = p.parse_args(argv)

    import torch
    from detectron2.config import instantiate
    from fvcore.nn import flop_count_table

    from alignment_det.config import load_config
    from alignment_det.checkpoint import CheckedCheckpointer

    cfg = load_config(args.config_file, args.opts)
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(args.device)
    if args.checkpoint:
        CheckedCheckpointer(model, strict=True).load(args.checkpoint)
    num_classes = next((m.num_classes for m in model.modules() if isinstance(getattr(m, "num_classes", None), int)), 80)
    h, w = args.size
    usage = parameter_usage(model, height=h, width=w, num_classes=num_classes)

    print(f"config: {args.config_file} ({type(model).__name__}), input {h}x{w}")
    print(f"parameters: {usage['total']:,} total ({_fmt(usage['total'])}), "
          f"{usage['inference']:,} used at inference ({_fmt(usage['inference'])})")
    print("training-only modules (called by a training forward, not at inference):")
    print(_module_table(usage["training_only"]))
    print("modules never called (in neither forward):")
    print(_module_table(usage["never_called"]))
    if not args.no_flops:
        flops = inference_flops(model, height=h, width=w)
        print(f"FLOPs at inference (fvcore; one multiply-add = 1 flop): {flops.total() / 1e9:.2f} G")
        print(flop_count_table(flops, max_depth=args.depth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
