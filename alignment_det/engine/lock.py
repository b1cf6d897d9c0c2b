"""One run per output folder: a lock file that two runs cannot hold at once.

Two runs writing one ``train.output_dir`` overwrite each other's ``last_checkpoint``,
``metrics.json`` and ``config.yaml`` without a word. The first process (global rank 0) of a
run takes ``<output_dir>/.alignment_det.lock`` with ``fcntl.flock``: a second run gets a clear
error naming the holder. The kernel drops the lock when its holder dies, however it dies, so
the lock of a dead process is taken over (with a note naming it); there is nothing to clean
up by hand. A run that ends normally empties the file. The file is never deleted (deleting a
lock file while another process opens it lets two processes lock two different files). Where
``fcntl`` does not exist (Windows) no lock is taken.
"""
import contextlib
import datetime
import os
import socket
import sys
from typing import Optional

__all__ = ["LOCK_NAME", "OutputDirInUseError", "lock_output_dir", "output_dir_lock", "release_output_dir"]

LOCK_NAME = ".alignment_det.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

_held = {}  # output dir -> open file holding its lock, for the life of the process


class OutputDirInUseError(RuntimeError):
    pass


def lock_output_dir(output_dir: str) -> Optional[str]:
    """Take the lock of ``output_dir`` for this process (idempotent), or raise
    :class:`OutputDirInUseError` naming the process that holds it.

    Returns:
        the description of a run that died holding it (its lock is now ours), else None.
    """
    output_dir = os.path.abspath(output_dir)
    if fcntl is None or output_dir in _held:
        return None
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise OutputDirInUseError(
            f"train.output_dir {output_dir} is in use by another run ({holder}). Two runs must not share "
            "an output folder: wait for it to end, stop it, or pass another train.output_dir=..."
        ) from None
    f.seek(0)
    previous = f.read().strip() or None
    f.seek(0)
    f.truncate()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {' '.join(sys.argv)}\n")
    f.flush()
    _held[output_dir] = f
    return previous


def release_output_dir(output_dir: str) -> None:
    """Empty and release the lock this process holds on ``output_dir`` (no-op if none)."""
    f = _held.pop(os.path.abspath(output_dir), None)
    if f is None:
        return
    f.seek(0)
    f.truncate()
    f.flush()
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    f.close()


@contextlib.contextmanager
def output_dir_lock(output_dir: str, enabled: bool = True):
    """Hold the lock of ``output_dir`` for the ``with`` block (when ``enabled``); yields what
    :func:`lock_output_dir` returns (to be logged once the logger writes into the folder)."""
    if not enabled:
        yield None
        return
    previous = lock_output_dir(output_dir)
    try:
        yield previous
    finally:
        release_output_dir(output_dir)
