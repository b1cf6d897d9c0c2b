"""The ends of a run that used to mislead (issue 19, item 5 and the checkpoint part of item 2):
train.max_iter=0, an option after the overrides, a full disk, colour codes in log.txt, the
iteration stamp of the final evaluation, --resume under another schedule, --eval-only of a
checkpoint of another architecture."""
import errno
import shutil

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from _cli import instant_config, train_net  # noqa: E402

from alignment_det.checkpoint import CheckedCheckpointer, CheckpointWriteError  # noqa: E402
from alignment_det.utils import metrics_file  # noqa: E402
from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402

RETINANET = instant_config("retinanet_instant_test.py")
MAL = instant_config("mal_instant_test.py")
MAX_ITER = 3


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-iteration RetinaNet instant run (lr x0.1 from iteration 2 on)."""
    out = tmp_path_factory.mktemp("retinanet_finished")
    train_net("--config-file", RETINANET, f"train.output_dir={out}", f"train.max_iter={MAX_ITER}", "train.log_period=1")
    return out


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


# ------------------------------------------------------------------ refused before anything is built
def test_max_iter_zero_is_refused_before_anything_is_built(tmp_path):
    proc = train_net("--config-file", RETINANET, f"train.output_dir={tmp_path}", "train.max_iter=0", check=False)
    assert proc.returncode != 0
    assert "train.max_iter=0: training needs at least 1 iteration" in proc.stderr
    assert "ZeroDivisionError" not in proc.stderr
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "log.txt").exists()


def test_an_option_after_the_overrides_says_options_go_first(tmp_path):
    proc = train_net("--config-file", RETINANET, f"train.output_dir={tmp_path}", "train.max_iter=5", "--resume", check=False)
    assert proc.returncode == 2
    assert "--resume comes after the config overrides; options go first" in proc.stderr
    assert f"--config-file {RETINANET} --resume train.output_dir={tmp_path} train.max_iter=5" in proc.stderr
    assert "not of the form key=value" not in proc.stderr


# ------------------------------------------------------------------ a full disk
def _tiny_checkpointer(folder):
    return CheckedCheckpointer(torch.nn.Linear(3, 2), str(folder))


def test_a_full_disk_is_named_with_the_path_and_the_last_checkpoint_is_kept(tmp_path, monkeypatch):
    ckpt = _tiny_checkpointer(tmp_path)
    ckpt.save("model_0000004")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as e:
        ckpt.save("model_0000009")
    assert e.value.errno == errno.ENOSPC
    assert f"Could not save checkpoint {tmp_path / 'model_0000009.pth'}: the disk is full" in str(e.value)
    assert "train.output_dir" in str(e.value) and "--resume" in str(e.value)
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]


def test_torchs_enforce_failure_on_a_full_disk_is_named_too(tmp_path, monkeypatch):
    # torch reports a failed write without the errno; with no room left on the disk it is a full disk.
    def enforce_fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", enforce_fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(CheckpointWriteError, match="the disk is full"):
        _tiny_checkpointer(tmp_path).save("model_final")
    # with room left, the same failure is something else and passes through as torch raised it
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    with pytest.raises(RuntimeError, match="enforce fail"):
        _tiny_checkpointer(tmp_path).save("model_final")


# ------------------------------------------------------------------ log.txt, iteration stamps
def test_log_txt_has_no_colour_codes(finished):
    log = (finished / "log.txt").read_text()
    assert "Contents of args.config_file" in log and "lr_multiplier = shrink_and_get_lr_multiplier(" in log  # the highlighted part
    assert "\x1b[" not in log


def test_final_evaluation_and_eval_only_of_model_final_share_one_iteration(finished, tmp_path):
    run = _copy(finished, tmp_path)
    train_net("--config-file", RETINANET, "--eval-only", f"train.output_dir={run}",
              f"train.init_checkpoint={run / 'model_final.pth'}", f"train.max_iter={MAX_ITER}")
    eval_rows = [r for r in read_metric_rows(run) if "bbox/AP" in r]
    assert [r["iteration"] for r in eval_rows] == [MAX_ITER - 1, MAX_ITER - 1]  # training's, then --eval-only's
    assert torch.load(run / "model_final.pth", weights_only=True)["iteration"] == MAX_ITER - 1
    # plot_metrics reads one run, not a restart that drops the last training point
    assert metrics_file.read_metrics(str(run))["total_loss"][0] == list(range(MAX_ITER))


# ------------------------------------------------------------------ --resume under another schedule
def test_resume_with_another_schedule_is_refused_naming_what_jumps(finished, tmp_path):
    run = _copy(finished, tmp_path)
    proc = train_net("--config-file", RETINANET, "--resume", f"train.output_dir={run}", "train.max_iter=5", check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "--resume at iteration 3 with another schedule than the checkpoint's" in err
    assert "train.max_iter 3 -> 5" in err and "lr multiplier x0.1 -> x1 (lr 0.001 -> 0.01)" in err
    assert "training progress iteration/max_iter 1.000 -> 0.600" in err and "MAL's selection count" in err
    assert "--allow-schedule-change" in err
    assert not (run / "model_0000003.pth").exists() and not list(run.glob("model_000000[34].pth"))

    proc = train_net("--config-file", RETINANET, "--resume", "--allow-schedule-change", f"train.output_dir={run}",
                     "train.max_iter=5", "train.log_period=1")
    log = proc.stdout + proc.stderr
    assert "Continuing with the new schedule (--allow-schedule-change)" in log
    assert "Starting training from iteration 3" in log
    assert torch.load(run / "model_final.pth", weights_only=True)["iteration"] == 4


def test_resume_under_the_same_schedule_says_nothing(finished, tmp_path):
    run = _copy(finished, tmp_path)
    proc = train_net("--config-file", RETINANET, "--resume", f"train.output_dir={run}", f"train.max_iter={MAX_ITER}")
    assert "another schedule" not in proc.stdout + proc.stderr


# ------------------------------------------------------------------ another architecture
def test_checkpoints_record_their_architecture_and_box_coder(finished):
    saved = torch.load(finished / "model_final.pth", weights_only=True)
    assert saved["architecture"] == {
        "meta_architecture": "alignment_det.modeling.meta_arch.dense.RetinaNet",
        "box_coder": "Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))",
    }
    assert saved["trainer"]["schedule"]["max_iter"] == MAX_ITER


def test_eval_only_of_another_architecture_is_an_error_unless_allowed(finished, tmp_path):
    args = ("--config-file", MAL, f"train.init_checkpoint={finished / 'model_final.pth'}")
    proc = train_net("--eval-only", *args, f"train.output_dir={tmp_path / 'refused'}", check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "CheckpointMismatchError" in err and "was saved by another architecture than the config's" in err
    assert ("meta_architecture alignment_det.modeling.meta_arch.dense.RetinaNet (checkpoint) vs "
            "alignment_det.modeling.meta_arch.mal.MALRetinaNet (config)") in err
    assert ("box_coder Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)) (checkpoint) vs "
            "Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)) (config)") in err
    assert "--allow-arch-mismatch" in err

    proc = train_net("--eval-only", "--allow-arch-mismatch", *args, f"train.output_dir={tmp_path / 'allowed'}")
    log = proc.stdout + proc.stderr
    assert "was saved by another architecture" in log and "copypaste: AP" in log

