"""Shared test fixtures.

* ``instant_run(name, *overrides)``: an instant config trained once per test session (and once
  across pytest-xdist workers) and shared by every test that needs a trained checkpoint, its
  metrics or an ``--eval-only`` of it. Tests must not write into its folder; they copy it first.
* ``once_per_session(name, make)``: ``make(folder)`` run once across xdist workers (module
  fixtures whose work is too costly to repeat per worker), returning ``(folder, text)``.
* ``two_process_run``: the session's one ``--num-gpus 2`` training (ALWA, a ``--register``-ed dataset).
* ``forbid_inference``: fails a test when evaluation reaches inference.

``tests/_cli.py`` holds the one way to run ``train_net.py``; ``tests/_inputs.py`` the tiny models
(``tiny_config``, ``tiny_model``, ``model_of``) and random inputs (``random_batch``, ``gt_instances``) of
in-process tests.
"""
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

# One synthetic-dataset cache per test session unless the caller chose one.
os.environ.setdefault("ALIGNMENT_DET_CACHE", os.path.join(tempfile.gettempdir(), "alignment_det_test_cache"))
# Lets test modules import the helpers beside them (_requires, _cli) under any import mode.
sys.path.insert(0, os.path.dirname(__file__))

# Under pytest-xdist every worker is one process on one core: torch's own threads would fight the
# other workers for the same cores (and the children they start inherit this).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the pure-layer isolation tests run without torch installed elsewhere
        pass

# Two images a batch, not the instant configs' four, for runs whose tests read logged keys, lr,
# checkpoints, iterations or printed tables, never a value that depends on the batch: it halves
# each iteration.
TWO_IMAGE_BATCH = "dataloader.train.total_batch_size=2"

# The short instant run: enough iterations for every loss and logged scalar to appear, with a
# metrics line per iteration and a checkpoint at iteration 4 (resume tests) beside model_final.pth.
SHORT_RUN = ("train.max_iter=10", "train.log_period=1", "train.checkpointer.period=5", TWO_IMAGE_BATCH)

# The 4-image synthetic split, and the override that evaluates an instant run on it: for runs whose
# tests read checkpoints, locks or logs, never an AP value (each run evaluates at its end).
MINI_SPLIT = "synthetic_shapes_mini"
EVAL_ON_MINI = f"dataloader.test.dataset.names={MINI_SPLIT}"


@dataclasses.dataclass(frozen=True)
class InstantRun:
    """A finished ``train_net.py`` run of an instant config: ``output`` (read-only for tests),
    ``config``, ``overrides``, ``log`` (its stdout + stderr) and ``final`` (``model_final.pth``)."""

    output: Path
    config: str
    overrides: Tuple[str, ...]
    log: str
    _evals: Path

    @property
    def final(self) -> Path:
        return self.output / "model_final.pth"

    def metrics(self) -> List[dict]:
        from alignment_det.utils.metrics_file import read_metric_rows

        return read_metric_rows(str(self.output))

    def eval_only(self, *overrides: str) -> str:
        """stdout + stderr of ``--eval-only`` of ``model_final.pth`` with ``overrides`` (run once,
        into a folder of its own, so the run's metrics.json stays as training left it)."""
        return _once(self._evals / (_folder_name(*overrides) or "default"), lambda out: _train_net(
            "--config-file", self.config, "--eval-only", f"train.init_checkpoint={self.final}",
            f"train.output_dir={out}", *self.overrides, *overrides,
        ))


def _folder_name(*parts: str) -> str:
    """A folder name for a run and its overrides (``=`` and ``/`` would break an override value)."""
    return re.sub(r"[^\w.-]+", "_", "_".join(parts))


def _train_net(*args) -> str:
    from _cli import train_net

    proc = train_net(*args)
    return proc.stdout + proc.stderr


def _drop_last_periodic(output: Path, log: str) -> str:
    """Delete ``model_0000009.pth``: SHORT_RUN's last periodic checkpoint holds the weights of
    ``model_final.pth`` (no test reads it), and each is ~95 MB of the suite's disk use."""
    (output / "model_0000009.pth").unlink(missing_ok=True)
    return log


def shared_root(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (the parent of their base temp
    folders), or this process's base temp folder without xdist."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def _once(folder: Path, make) -> str:
    """``make(folder / "out")`` once for ``folder`` across processes (xdist workers); the text it
    returns is kept in ``folder / "stdout.txt"`` for the others."""
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "stdout.txt"
    with FileLock(str(folder) + ".lock"):
        if not done.is_file():
            text = make(folder / "out")
            tmp = folder / "stdout.txt.tmp"
            tmp.write_text(text)
            tmp.rename(done)
    return done.read_text()


@pytest.fixture(scope="session")
def instant_run(tmp_path_factory):
    """``instant_run(name, *overrides) -> InstantRun``: ``configs/quick_schedules/<name>`` trained
    with :data:`SHORT_RUN` and ``overrides`` (later ones win), once per session."""
    from _cli import instant_config

    root = shared_root(tmp_path_factory) / "instant_runs"
    cache: Dict[Tuple[str, Tuple[str, ...]], InstantRun] = {}

    def get(name: str, *overrides: str) -> InstantRun:
        key = (name, tuple(overrides))
        if key not in cache:
            folder = root / _folder_name(name[: -len(".py")], *overrides)
            config = instant_config(name)
            all_overrides = SHORT_RUN + tuple(overrides)
            log = _once(folder, lambda out: _drop_last_periodic(out, _train_net(
                "--config-file", config, f"train.output_dir={out}", *all_overrides)))
            cache[key] = InstantRun(folder / "out", config, tuple(overrides), log, folder / "evals")
        return cache[key]

    return get


@pytest.fixture(scope="session")
def once_per_session(tmp_path_factory):
    """``once_per_session(name, make) -> (folder, text)``: ``make(folder)`` (returning text) runs
    once per session across xdist workers; the others wait for it and get its folder and text."""
    root = shared_root(tmp_path_factory) / "once"

    def get(name: str, make):
        folder = root / name
        return folder / "out", _once(folder, make)

    return get


@dataclasses.dataclass(frozen=True)
class TwoProcessRun:
    """The session's one ``train_net.py --num-gpus 2`` training (see :func:`two_process_run`)."""

    output: Path
    config: str
    log: str


# The ALWA instant test on a VOC folder that only a --register file knows, trained by two CPU
# processes (gloo): one spawn serves the checks that need two ranks in training (--register in
# every process, ALWA's all-reduced windows in the checkpoint). ALWA updates α every 4 iterations.
TWO_PROCESS_OVERRIDES = (
    "dataloader.train.dataset.names=ad_gpus_train", "dataloader.test.dataset.names=ad_gpus_val",
    "model.alwa.period=4", "train.max_iter=10", "train.checkpointer.period=1000",
)


@pytest.fixture(scope="session")
def two_process_run(once_per_session):
    """A :class:`TwoProcessRun`: ``retinanet_alwa_instant_test.py`` with
    :data:`TWO_PROCESS_OVERRIDES`, ``--num-gpus 2 --dist-url auto --register <file>``, once."""
    from _cli import instant_config

    config = instant_config("retinanet_alwa_instant_test.py")

    def make(out: Path) -> str:
        from alignment_det.data import make_synthetic_voc

        data = out.parent / "data"
        make_synthetic_voc(str(data / "voc"), {"train": 4, "val": 2})
        register = data / "register_tiny_voc.py"
        register.write_text(
            "from alignment_det.data import SYNTHETIC_CLASSES, register_voc\n"
            f"register_voc('ad_gpus_train', {str(data / 'voc')!r}, 'train', class_names=SYNTHETIC_CLASSES)\n"
            f"register_voc('ad_gpus_val', {str(data / 'voc')!r}, 'val', class_names=SYNTHETIC_CLASSES)\n"
        )
        # --dist-url auto: a free port (the default one is fixed per user and collides).
        return _train_net("--num-gpus", "2", "--dist-url", "auto", "--register", register, "--config-file", config,
                          f"train.output_dir={out}", *TWO_PROCESS_OVERRIDES)

    out, log = once_per_session("two_process_run", make)
    return TwoProcessRun(out, config, log)


@pytest.fixture
def forbid_inference(monkeypatch):
    """Fails the test when ``Trainer.test`` reaches inference: for checks that must come first."""
    monkeypatch.setattr(
        "alignment_det.engine.trainer.inference_on_dataset",
        lambda *a, **k: pytest.fail("inference ran before the check"),
    )


# The longest tests, started first: a worker that finishes early steals from the others
# (--dist worksteal), but a long test left for last keeps the whole suite waiting on one worker.
# (Order only: nothing here changes what runs.)
LONGEST_FIRST = (
    "test_gpu_check.py::test_report_has_a_row",
    "test_engine_e2e.py::test_instant_fcos_learns",
    "test_launch_lock.py::test_killed_launcher",
    "test_alwa_e2e.py::test_train_net_two_processes",
    "test_accuracy_benchmark.py::test_end_to_end",
    "test_accuracy_benchmark.py::test_register_file",
    "test_mal_e2e.py::test_two_process",
    "test_checkpoint_faults.py::test_killed_while_writing",
    "test_alignment_e2e.py::test_two_processes",
)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than cores. A worker that waits (for a shared run another worker
    trains, a subprocess's poll or sleep) would leave its core idle; measured on 2 cores, 3 workers
    ran the suite in 448 s against 467 s for 2, with the cores busy 96 % of the time."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items):
    def rank(item):
        return next((i for i, key in enumerate(LONGEST_FIRST) if key in item.nodeid), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order
