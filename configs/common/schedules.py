"""The training length and its LR multiplier, set together: ``lr_multiplier = schedule(train, max_iter, ...)``
writes ``train.max_iter`` and returns a multi-step decay with linear warm-up (Detectron2's schedules)
over that same length, so the two cannot disagree."""
from alignment_det.config.schedules import multistep

# Detectron2's 1x COCO schedule at 16 images/batch; 2x / 3x are multiples.
COCO_1X_ITERS = 90000


def schedule(train, max_iter: int, steps=None, *, warmup_iters: int = 1000, warmup_factor: float = 0.001):
    """Set ``train.max_iter = max_iter``; return the LR multiplier: x1, then x0.1 at each of ``steps``
    (default: Detectron2's COCO decays at 2/3 and 8/9 of ``max_iter``), after a linear warm-up over
    ``warmup_iters`` from ``warmup_factor``."""
    if steps is None:
        steps = [max_iter * 2 // 3, max_iter * 8 // 9]
    train.max_iter = max_iter
    return multistep(max_iter, steps, warmup_iters, warmup_factor)
