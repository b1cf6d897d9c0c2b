"""torch.distributed helpers for state that every rank must share (ALWA windows,
positive counts). They are no-ops in a single process, so the pure layer and its
tests need no process group."""
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
