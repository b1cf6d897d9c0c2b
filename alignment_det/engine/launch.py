"""Detectron2's ``launch`` with workers that die with their launcher.

``detectron2.engine.launch`` spawns one process per GPU (or CPU rank) with
``torch.multiprocessing`` (Detectron2's own comment there: "TODO prctl in spawned processes").
torch's spawn asks the kernel for SIGINT when the parent dies, which is not enough: a job
started in the background of a script (``python train_net.py ... &``) has SIGINT ignored
(POSIX), and so do its workers, so when the launcher is killed (``kill -9``, an OOM kill)
they go on training and writing checkpoints into the output folder; where SIGINT is not
ignored it arrives as a KeyboardInterrupt, after which the trainer's ``finally`` hooks still
write.

Here each worker, as soon as Detectron2 hands it ``main_func``, asks the kernel to send it
SIGKILL (which cannot be ignored or caught) when its parent dies (Linux
``prctl(PR_SET_PDEATHSIG)`` through ctypes, replacing torch's SIGINT), then checks that the
launcher is still its parent (it may have died before the ``prctl``). Where ``prctl`` is unavailable (macOS,
Windows) a daemon thread polls the parent pid once a second instead. Checkpoints are written
atomically (``checkpoint.atomic_open``), so a worker killed mid-write leaves no broken file.
"""
import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import sys
import threading
import time

from detectron2.engine import launch as _d2_launch

logger = logging.getLogger("alignment_det")

__all__ = ["die_with_parent", "launch"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _set_parent_death_signal(sig: int) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, period_s: float = 1.0) -> None:
    """Fallback: a daemon thread that ends the process once ``parent_pid`` is no longer its parent."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its launcher) ends."""
    if not _set_parent_death_signal(signal.SIGKILL):
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the launcher died before the prctl above took effect
        os._exit(1)


def _worker_main(parent_pid: int, main_func, *args):
    die_with_parent(parent_pid)
    return main_func(*args)


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(), **kwargs):
    """``detectron2.engine.launch`` whose spawned workers end with this process.

    With one process in all (no spawn), ``main_func`` runs here, as in Detectron2.
    """
    if num_machines * num_gpus_per_machine > 1:
        # A partial of module-level functions pickles, so the spawned workers can run it.
        main_func = functools.partial(_worker_main, os.getpid(), main_func)
    return _d2_launch(
        main_func, num_gpus_per_machine, num_machines=num_machines, machine_rank=machine_rank,
        dist_url=dist_url, args=args, **kwargs,
    )
