"""LR multipliers: multi-step decay with linear warm-up, as Detectron2's schedules.

Lives in the package (not only in ``configs/common/``) because configs generated outside the
configs folder (``benchmarks/accuracy.py``) and :mod:`alignment_det.config.presets` build
schedules too; ``configs/common/schedules.py`` re-exports it for the zoo configs.
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

__all__ = ["multistep"]


def multistep(max_iter: int, steps, warmup_iters: int = 1000, warmup_factor: float = 0.001, gamma: float = 0.1):
    """LR x1 until each of ``steps``, then x``gamma``; linear warm-up over ``warmup_iters``."""
    steps = list(steps)
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[gamma**i for i in range(len(steps) + 1)], milestones=steps, num_updates=max_iter
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=warmup_factor,
    )
