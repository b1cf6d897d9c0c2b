"""Run a function in two CPU processes joined by a gloo process group, as DDP training would."""
import json
import os
import socket


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, out_dir, fn):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(fn(rank), f)
    finally:
        dist.destroy_process_group()


def run_gloo(fn, out_dir, world: int = 2):
    """``fn(rank)`` in ``world`` processes (``fn`` a module-level function returning JSON data);
    returns the list of results by rank. Skips the test where torch.distributed is unavailable."""
    import pytest
    import torch
    import torch.multiprocessing as mp

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available in this torch build")
    mp.spawn(_entry, args=(world, _free_port(), str(out_dir), fn), nprocs=world, join=True)
    return [json.load(open(os.path.join(str(out_dir), f"rank{r}.json"))) for r in range(world)]
