"""Fault injection on checkpoints (issue 14, items 1 and 8): writes interrupted in-process and
by SIGKILL, empty / truncated / random-bytes files, and what --resume, --eval-only,
train.init_checkpoint and model_zoo.get(trained=True) do with them. After every fault the
newest complete checkpoint loads and training continues from it."""
import glob
import hashlib
import logging
import os

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from _cli import instant_config, run_script, train_net  # noqa: E402
from conftest import EVAL_ON_MINI, TWO_IMAGE_BATCH  # noqa: E402

from alignment_det import model_zoo  # noqa: E402
from alignment_det.checkpoint import (  # noqa: E402
    CheckedCheckpointer,
    CheckpointMismatchError,
    CheckpointUnreadableError,
)
from alignment_det.checkpoint import catalog  # noqa: E402

FCOS = instant_config("fcos_instant_test.py")


class Counter:
    """A checkpointable with one number, standing in for the trainer's state."""

    def __init__(self, value=0):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def checkpointer(folder, value=0, **kw):
    torch.manual_seed(value)
    model = torch.nn.Linear(3, 2)
    counter = Counter(value)
    return CheckedCheckpointer(model, str(folder), counter=counter, **kw), model, counter


def break_file(path, how: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"empty": b"", "truncated": data[: len(data) // 2], "random": os.urandom(len(data))}[how])


def readable(path) -> bool:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:  # noqa: BLE001
        return False


# ----------------------------------------------------------------------------- writing
@pytest.mark.parametrize("existing", [False, True], ids=["new_file", "overwrite"])
def test_a_write_interrupted_in_process_leaves_the_old_files_untouched(tmp_path, monkeypatch, existing):
    ckpt, _, counter = checkpointer(tmp_path, value=1)
    ckpt.save("model_0000001")
    if existing:
        ckpt.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes() if existing else None
    tag_before = (tmp_path / "last_checkpoint").read_text()

    def write_half_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"\0" * 1000)  # the start of a zip file, then the "crash"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", write_half_then_fail)
    counter.value = 2
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final")
    monkeypatch.undo()
    # Detectron2 writes in place: a half-written model_final.pth would be left here.
    if existing:
        assert (tmp_path / "model_final.pth").read_bytes() == before
    else:
        assert not (tmp_path / "model_final.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == tag_before
    assert not glob.glob(str(tmp_path / ".*")), "the temporary file must be removed"
    # ...and the newest complete checkpoint still loads.
    fresh, _, fresh_counter = checkpointer(tmp_path, value=0)
    fresh.resume_or_load("", resume=True)
    assert fresh_counter.value == 1


def test_last_checkpoint_is_written_after_the_checkpoint_and_atomically(tmp_path, monkeypatch):
    ckpt, _, _ = checkpointer(tmp_path)
    order = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(os.path.basename(b)), real_replace(a, b))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: order.append("fsync"))
    ckpt.save("model_0000004")
    # fsync before each rename, the checkpoint renamed before last_checkpoint names it.
    assert order == ["fsync", "model_0000004.pth", "fsync", "fsync", "last_checkpoint", "fsync"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


# ----------------------------------------------------------------------------- reading
@pytest.mark.parametrize("how", ["empty", "truncated", "random"])
def test_resume_skips_an_unreadable_checkpoint_and_takes_the_newest_readable(tmp_path, how, caplog):
    for it in (1, 2):
        ckpt, _, _ = checkpointer(tmp_path, value=it)
        ckpt.save(f"model_000000{it}")
    ckpt, _, _ = checkpointer(tmp_path, value=3)
    ckpt.save("model_final")
    break_file(tmp_path / "model_final.pth", how)
    fresh, model, counter = checkpointer(tmp_path, value=0)
    with caplog.at_level(logging.WARNING, logger="alignment_det"):
        fresh.resume_or_load("", resume=True)
    assert counter.value == 2, "should resume from model_0000002.pth, the newest readable checkpoint"
    _, expected, _ = checkpointer(tmp_path / "unused", value=2)
    assert torch.equal(model.weight, expected.weight)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("model_final.pth is unreadable" in w for w in warning), warning


def test_resume_with_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    ckpt, _, _ = checkpointer(tmp_path, value=1)
    ckpt.save("model_0000001")
    break_file(tmp_path / "model_0000001.pth", "truncated")
    fresh, _, _ = checkpointer(tmp_path)
    with pytest.raises(CheckpointUnreadableError, match="no readable checkpoint"):
        fresh.resume_or_load("", resume=True)


@pytest.mark.parametrize("how", ["empty", "truncated", "random"])
def test_an_unreadable_checkpoint_elsewhere_is_a_one_line_error_naming_the_file(tmp_path, how):
    ckpt, _, _ = checkpointer(tmp_path, value=1)
    ckpt.save("weights")
    break_file(tmp_path / "weights.pth", how)
    loader, _, _ = checkpointer(tmp_path / "other", strict=True)
    with pytest.raises(CheckpointUnreadableError) as e:
        loader.load(str(tmp_path / "weights.pth"))
    message = str(e.value)
    assert str(tmp_path / "weights.pth") in message and "\n" not in message
    assert ("empty" if how == "empty" else "truncated or not a checkpoint") in message
    assert "weights_only" not in message and e.value.__cause__ is None and e.value.__suppress_context__


def test_a_file_that_needs_an_unsafe_load_is_named_without_the_unsafe_advice(tmp_path):
    import numpy as np

    torch.save({"model": {"w": np.zeros(3)}}, tmp_path / "numpy.pth")
    loader, _, _ = checkpointer(tmp_path)
    with pytest.raises(CheckpointUnreadableError, match="numpy") as e:
        loader.load(str(tmp_path / "numpy.pth"))
    assert "weights_only" not in str(e.value) and "re-save it as a dict of tensors" in str(e.value)


# ----------------------------------------------------------------------------- model zoo
def test_model_zoo_get_trained_is_strict(tmp_path, monkeypatch):
    config = "quick_schedules/fcos_instant_test.py"
    full = model_zoo.get(config, device="cpu").state_dict()
    partial = {k: v for i, (k, v) in enumerate(full.items()) if i % 2}  # half the parameters
    (tmp_path / "fcos").mkdir()
    torch.save({"model": partial}, tmp_path / "fcos" / "model_final.pth")
    monkeypatch.setenv(model_zoo.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(catalog, "CHECKPOINTS", {})
    sha = hashlib.sha256((tmp_path / "fcos" / "model_final.pth").read_bytes()).hexdigest()
    model_zoo.register_checkpoint(config, "fcos/model_final.pth", sha)
    with pytest.raises(CheckpointMismatchError, match="does not fit the model"):
        model_zoo.get(config, trained=True, device="cpu")
    # A complete checkpoint loads.
    torch.save({"model": full}, tmp_path / "fcos" / "model_final.pth")
    sha = hashlib.sha256((tmp_path / "fcos" / "model_final.pth").read_bytes()).hexdigest()
    model_zoo.register_checkpoint(config, "fcos/model_final.pth", sha)
    model = model_zoo.get(config, trained=True, device="cpu")
    assert all(torch.equal(v, full[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- through train_net.py
KILL_DURING_FINAL_SAVE = '''
"""train_net.py, SIGKILLed while it writes model_final.pth (after the first bytes)."""
import os, signal, sys
import torch

_save = torch.save


def save_then_die(obj, f, *args, **kwargs):
    if "model_final" in os.path.basename(str(getattr(f, "name", f))):
        f.write(b"PK\\x03\\x04" + bytes(4096))
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, f, *args, **kwargs)


torch.save = save_then_die
from alignment_det.engine import invoke_main

invoke_main(sys.argv[1:])
'''


def _iteration(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["trainer"]["iteration"]


def test_killed_while_writing_model_final_then_resumed(tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "kill_during_save.py"
    script.write_text(KILL_DURING_FINAL_SAVE)
    common = (f"train.output_dir={out}", "train.max_iter=8", "train.checkpointer.period=3", EVAL_ON_MINI,
              TWO_IMAGE_BATCH)
    proc = run_script(str(script), "--config-file", FCOS, *common, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    # Every checkpoint file left is complete, and last_checkpoint names the newest one.
    files = sorted(glob.glob(str(out / "model_*.pth")))
    assert [os.path.basename(f) for f in files] == ["model_0000002.pth", "model_0000005.pth"], files
    assert all(readable(f) for f in files)
    assert (out / "last_checkpoint").read_text() == "model_0000005.pth"

    proc = train_net("--config-file", FCOS, "--resume", *common)
    assert "Starting training from iteration 6" in proc.stdout + proc.stderr
    assert readable(out / "model_final.pth") and _iteration(out / "model_final.pth") == 7
    assert not glob.glob(str(out / ".*.tmp")), "the killed write's temporary file is cleaned up on resume"

    # A finished run whose model_final.pth is then damaged (a power loss after the rename, a
    # bad copy): --eval-only on it is a one-line error naming it...
    break_file(out / "model_final.pth", "truncated")
    proc = train_net(
        "--config-file", FCOS, "--eval-only", f"train.output_dir={tmp_path / 'eval'}",
        f"train.init_checkpoint={out / 'model_final.pth'}", check=False,
    )
    assert proc.returncode != 0
    assert f"CheckpointUnreadableError: Checkpoint {out / 'model_final.pth'} is unreadable" in proc.stderr
    assert "weights_only" not in proc.stderr + proc.stdout
    # ...and --resume continues from the last good checkpoint and writes model_final.pth again.
    proc = train_net("--config-file", FCOS, "--resume", *common)
    log = proc.stdout + proc.stderr
    assert "model_final.pth is unreadable" in log and "Starting training from iteration 6" in log
    assert readable(out / "model_final.pth") and _iteration(out / "model_final.pth") == 7


def test_a_finished_run_resumed_from_its_last_periodic_checkpoint_writes_model_final(tmp_path):
    # Killed while writing model_final.pth right after model_0000007.pth (iteration 7 of 8):
    # nothing is left to train, and --resume writes model_final.pth from model_0000007.pth.
    from alignment_det.engine import Trainer
    from alignment_det.config import load_config

    cfg = load_config(FCOS, [f"train.output_dir={tmp_path}", "train.max_iter=8"])
    first = Trainer(cfg)
    first.iter = 7
    first.checkpointer.save("model_0000007")
    (tmp_path / "model_final.pth").write_bytes(b"")  # or no file at all: the same
    again = Trainer(cfg)
    again.resume_or_load(resume=True)
    assert again.start_iter == 8 and _iteration(tmp_path / "model_final.pth") == 7
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    periodic = torch.load(tmp_path / "model_0000007.pth", weights_only=True)["model"]
    assert all(torch.equal(v, periodic[k]) for k, v in final.items())


def test_random_bytes_init_checkpoint_is_a_clear_error(tmp_path):
    bogus = tmp_path / "random.pth"
    bogus.write_bytes(os.urandom(5000))
    proc = train_net(
        "--config-file", FCOS, f"train.output_dir={tmp_path / 'out'}", f"train.init_checkpoint={bogus}",
        "train.max_iter=1", check=False,
    )
    assert proc.returncode != 0
    assert f"Checkpoint {bogus} is unreadable: it is truncated or not a checkpoint" in proc.stderr
    assert "weights_only" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out" / "model_final.pth").exists()
