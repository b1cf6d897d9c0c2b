"""Workers die with their launcher, and one output folder holds one run (issue 14, item 4):
the launcher of --num-gpus 2 is SIGKILLed while its workers train; they must end and write
nothing more; the dead run's lock is taken over and training continues from the newest
complete checkpoint."""
import os
import signal
import subprocess
import sys
import time

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from _cli import REPO, instant_config, subprocess_env, train_net  # noqa: E402
from conftest import EVAL_ON_MINI  # noqa: E402

from alignment_det.engine.lock import LOCK_NAME, OutputDirInUseError, lock_output_dir, release_output_dir  # noqa: E402
from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
FCOS = instant_config("fcos_instant_test.py")


def _children(pid: int):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _snapshot(folder):
    return {f: (os.stat(os.path.join(folder, f)).st_size, os.stat(os.path.join(folder, f)).st_mtime_ns)
            for f in os.listdir(folder)}


def _wait_for(condition, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_launcher_takes_its_workers_with_it_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    # torch's spawn asks for SIGINT on parent death, which a job started in the background of a
    # script (`python train_net.py ... &`, SIGINT ignored by POSIX rule) never acts on: its
    # workers went on training and writing checkpoints. Launch the same way.
    launcher = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", FCOS, "--num-gpus", "2",
         "--dist-url", "auto", f"train.output_dir={out}", "train.max_iter=100000", "train.log_period=1",
         "train.checkpointer.period=2"],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    workers = []
    try:
        _wait_for(lambda: (out / "model_0000003.pth").exists(), 300, "two checkpoints of the two-process run")
        workers = _children(launcher.pid)
        assert len(workers) >= 2, workers

        # A second run into the same folder is refused while this one runs.
        second = train_net("--config-file", FCOS, f"train.output_dir={out}", "train.max_iter=2", check=False)
        assert second.returncode != 0
        assert "OutputDirInUseError" in second.stderr and "is in use by another run" in second.stderr

        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        _wait_for(lambda: not any(_alive(p) for p in workers), 20, f"the workers {workers} to end with their launcher")
        before = _snapshot(out)
        time.sleep(3)
        assert _snapshot(out) == before, "something still writes into the output folder"
    finally:
        for pid in [launcher.pid] + workers:  # only what this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    # The dead run's lock is taken over, and training continues from the newest complete checkpoint.
    newest = (out / "last_checkpoint").read_text()
    iteration = torch.load(out / newest, weights_only=True)["trainer"]["iteration"]
    proc = train_net("--config-file", FCOS, "--resume", "--allow-schedule-change", f"train.output_dir={out}",
                     f"train.max_iter={iteration + 3}", "train.log_period=1", EVAL_ON_MINI)
    log = proc.stdout + proc.stderr
    assert "Took over the lock" in log and f"Starting training from iteration {iteration + 1}" in log
    assert max(m["iteration"] for m in read_metric_rows(out) if "total_loss" in m) == iteration + 2
    assert (out / LOCK_NAME).read_text() == "", "a run that ends normally leaves the lock empty"


def test_lock_is_exclusive_and_released(tmp_path):
    # flock locks belong to open files: a second open file in this process stands in for a
    # second run (the first lock is held through lock_output_dir's own file).
    import fcntl

    lock_output_dir(str(tmp_path))
    try:
        with open(tmp_path / LOCK_NAME) as other:
            with pytest.raises(OSError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    finally:
        release_output_dir(str(tmp_path))
    with open(tmp_path / LOCK_NAME) as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again


def test_a_held_lock_is_a_clear_error(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); f.write('pid 4242 on elsewhere'); "
         "f.flush(); fcntl.flock(f.fileno(), fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(tmp_path / LOCK_NAME)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirInUseError, match=r"in use by another run \(pid 4242 on elsewhere\)"):
            lock_output_dir(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    lock_output_dir(str(tmp_path))  # the holder is gone: its lock is taken over
    release_output_dir(str(tmp_path))
