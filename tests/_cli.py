"""Run ``train_net.py`` in a subprocess, as a user would, and read what it wrote."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env() -> dict:
    """The environment of a child Python that imports this checkout's alignment_det."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_script(script: str, *args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` from the repository root; with ``check`` a non-zero exit fails
    with the log tail."""
    proc = subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{os.path.basename(script)} {' '.join(map(str, args))} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def train_net(*args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python train_net.py ARGS``; with ``check`` a non-zero exit fails with the log tail."""
    return run_script(os.path.join(REPO, "train_net.py"), *args, check=check, timeout=timeout)


def instant_config(name: str) -> str:
    return os.path.join(REPO, "configs", "quick_schedules", name)
