"""The one way tests run ``train_net.py`` (and the other scripts), and where they find configs.

:func:`train_net` runs ``train_net.py``'s entry point in this process by default: the child
interpreter's start-up (importing torch and Detectron2, about 5 s) was most of the time of a test
that trains an instant config for a few iterations. It captures what a user would see on stdout
and stderr and the exit status, as :func:`subprocess.run` would, and leaves no logging handler or
open log file behind. ``isolated=True`` (and any ``--num-gpus`` above 1) runs it as a subprocess
instead: for tests of process-level behaviour (signals, locks held by a live process, environment
read at import such as ``PYTORCH_JIT``).
"""
import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env() -> dict:
    """The environment of a child Python that imports this checkout's alignment_det."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _failed(proc: subprocess.CompletedProcess, name: str, args) -> AssertionError:
    return AssertionError(
        f"{name} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )


def run_script(script: str, *args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` from the repository root; with ``check`` a non-zero exit fails
    with the log tail."""
    proc = subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise _failed(proc, os.path.basename(script), args)
    return proc


def _all_loggers():
    return [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]


def _forget_run_logging() -> None:
    """Detectron2's ``setup_logger`` caches its loggers and log files per output folder: forget
    them, so that the next run binds its console handlers to the streams in place at its start."""
    from detectron2.utils import logger as d2_logger

    d2_logger.setup_logger.cache_clear()
    d2_logger._cached_log_stream.cache_clear()


def run_in_process(argv) -> subprocess.CompletedProcess:
    """``invoke_main(argv)`` here, from the repository root, as a child process would run it: stdout
    and stderr captured (logging included), an exception printed as its traceback with status 1,
    ``SystemExit`` as its code. Handlers the run added are removed and their files closed after."""
    from alignment_det.engine import invoke_main

    argv = [str(a) for a in argv]
    before = {id(lg): list(lg.handlers) for lg in _all_loggers()}
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    returncode = 0
    _forget_run_logging()
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                invoke_main(argv)
            except SystemExit as e:
                if isinstance(e.code, str):
                    err.write(e.code + "\n")
                returncode = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # noqa: BLE001 -- what the interpreter does with an uncaught error
                traceback.print_exc(file=err)
                returncode = 1
    finally:
        os.chdir(cwd)
        for lg in _all_loggers():
            for h in [h for h in lg.handlers if h not in before.get(id(lg), [])]:
                lg.removeHandler(h)
                stream = getattr(h, "stream", None)
                if stream is not None and stream not in (out, err, sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                    stream.close()
                h.close()
        _forget_run_logging()
    return subprocess.CompletedProcess(["train_net.py", *argv], returncode, out.getvalue(), err.getvalue())


def train_net(*args, check: bool = True, timeout: int = 600, isolated: bool = False) -> subprocess.CompletedProcess:
    """``python train_net.py ARGS`` (see the module docstring for where it runs); with ``check`` a
    non-zero exit fails with the log tail. ``timeout`` applies to subprocesses only."""
    args = [str(a) for a in args]
    num_gpus = int(args[args.index("--num-gpus") + 1]) if "--num-gpus" in args else 1
    if isolated or num_gpus > 1:
        return run_script(os.path.join(REPO, "train_net.py"), *args, check=check, timeout=timeout)
    proc = run_in_process(args)
    if check and proc.returncode != 0:
        raise _failed(proc, "train_net.py", args)
    return proc


def accuracy_runner_in_process(cmd, log_path: str) -> int:
    """A ``runner`` for ``benchmarks/accuracy.py`` that runs its ``python train_net.py ...`` command
    with :func:`run_in_process`, appending the output to ``log_path`` as its subprocess runner does."""
    assert os.path.basename(cmd[1]) == "train_net.py", cmd
    proc = run_in_process(cmd[2:])
    with open(log_path, "a") as log:
        log.write(proc.stdout + proc.stderr)
    return proc.returncode


def instant_config(name: str) -> str:
    return os.path.join(REPO, "configs", "quick_schedules", name)
