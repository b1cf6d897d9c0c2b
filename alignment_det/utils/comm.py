"""torch.distributed helpers for state that every rank must share (ALWA windows,
positive counts). They are no-ops in a single process, so the pure layer and its
tests need no process group."""
from typing import Union

import torch
import torch.distributed as dist


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all ranks (a new tensor; the input is untouched).

    Works on CPU (gloo) and CUDA (nccl) alike; returns a detached copy.
    """
    world = get_world_size()
    out = tensor.detach().clone()
    if world == 1:
        return out
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world


def positive_normalizer(count: Union[int, float, torch.Tensor], device=None, *, floor: float = 1.0) -> torch.Tensor:
    """``max(mean over ranks of count, floor)``: the divisor of a loss summed over positives.

    Args:
        count: this rank's number of positives (int) or sum of positive weights (tensor, e.g. the
            centerness targets), detached.
        device: of the result when ``count`` is a number.
        floor: lower bound (1: a batch without positives divides by 1, not 0).

    Every rank must call it on every step (an all-reduce); in one process it is ``max(count, floor)``.
    """
    if not isinstance(count, torch.Tensor):
        count = torch.tensor(float(count), device=device)
    return all_reduce_mean(count).clamp(min=floor)
