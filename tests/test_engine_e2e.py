"""The foundation end to end: train_net.py on the instant tests, --eval-only, --resume,
two CPU processes, and the errors users hit (bad checkpoint, override typo, AMP on CPU)."""
import os

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from _cli import instant_config, train_net  # noqa: E402

from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402


@pytest.fixture(scope="module")
def trained_fcos(tmp_path_factory):
    out = tmp_path_factory.mktemp("fcos_instant")
    proc = train_net("--config-file", instant_config("fcos_instant_test.py"), f"train.output_dir={out}")
    return out, proc


@pytest.mark.parametrize("name", ["retinanet_instant_test.py", "fcos_instant_test.py"])
def test_instant_test_trains_then_eval_only_prints_ap(name, tmp_path):
    train_net("--config-file", instant_config(name), f"train.output_dir={tmp_path}", "train.max_iter=30")
    assert (tmp_path / "model_final.pth").is_file()
    train_rows = [m for m in read_metric_rows(tmp_path) if "total_loss" in m]
    assert train_rows[-1]["iteration"] == 29 and "lr" in train_rows[-1]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path)), "no TensorBoard file"
    # 30 iterations leave every score under the test threshold; 0 still evaluates the ranking.
    proc = train_net(
        "--config-file", instant_config(name), "--eval-only", "model.test_score_thresh=0.0",
        f"train.output_dir={tmp_path}", f"train.init_checkpoint={tmp_path / 'model_final.pth'}",
    )
    log = proc.stdout + proc.stderr
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log and "|  AP   |" in log


def test_eval_only_with_resume_uses_last_checkpoint(trained_fcos):
    out, _ = trained_fcos
    proc = train_net("--config-file", instant_config("fcos_instant_test.py"), "--eval-only", "--resume", f"train.output_dir={out}")
    log = proc.stdout + proc.stderr
    assert "model_final.pth" in log and "copypaste: AP" in log


def test_instant_fcos_learns(trained_fcos):
    # An untrained FCOS scores nothing above its 0.2 threshold, so AP > 0 means it learned.
    out, proc = trained_fcos
    ap_line = [l for l in (proc.stdout + proc.stderr).splitlines() if "copypaste: " in l][-1]
    assert float(ap_line.split("copypaste: ")[1].split(",")[0]) > 0.0, ap_line


def test_resume_continues_at_the_right_iteration_with_the_same_lr(tmp_path):
    cfg = instant_config("fcos_instant_test.py")
    full, part = tmp_path / "full", tmp_path / "part"
    common = ("train.checkpointer.period=50", "train.log_period=1")
    train_net("--config-file", cfg, f"train.output_dir={full}", *common)
    # Stop at 50, then continue to 100 (the lr multiplier is built for 100 steps; the first 50 ran it
    # compressed into 50, so the resume changes the schedule on purpose).
    train_net("--config-file", cfg, f"train.output_dir={part}", "train.max_iter=50", *common)
    proc = train_net("--config-file", cfg, "--resume", "--allow-schedule-change", f"train.output_dir={part}",
                     "train.max_iter=100", *common)
    assert "Starting training from iteration 50" in proc.stdout + proc.stderr
    lr_full = {m["iteration"]: m["lr"] for m in read_metric_rows(full) if "lr" in m}
    lr_part = {m["iteration"]: m["lr"] for m in read_metric_rows(part) if "lr" in m}
    assert min(i for i in lr_part if i >= 50) == 50
    for it in range(50, 100):
        assert lr_part[it] == pytest.approx(lr_full[it]), it
    assert lr_part[99] < lr_part[50], "the step at iteration 80 was lost on resume"
    # FCOS's loss normaliser (an EMA Detectron2 keeps in a plain attribute, initial value 300)
    # travels in the trainer state of every checkpoint.
    saved = torch.load(part / "model_0000049.pth", weights_only=False)["trainer"]["ema_state"]
    assert 0 < saved[""]["loss_normalizer"] < 300


def test_two_processes_train_on_cpu(tmp_path):
    proc = train_net(
        # --dist-url auto: the default port is fixed per user and collides with parallel runs.
        "--config-file", instant_config("fcos_instant_test.py"), "--num-gpus", "2", "--dist-url", "auto",
        f"train.output_dir={tmp_path}", "train.max_iter=4",
    )
    log = proc.stdout + proc.stderr
    assert "World size: 2" in log
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "log.txt.rank1").is_file()


def test_checkpoint_of_another_model_is_a_clear_error(trained_fcos, tmp_path):
    out, _ = trained_fcos
    proc = train_net(
        "--config-file", instant_config("retinanet_instant_test.py"), "--eval-only",
        f"train.output_dir={tmp_path}", f"train.init_checkpoint={out / 'model_final.pth'}", check=False,
    )
    assert proc.returncode != 0
    assert "CheckpointMismatchError" in proc.stderr and "does not fit the model" in proc.stderr


def test_checkpoint_with_nothing_usable_is_an_error_when_training(tmp_path):
    bogus = tmp_path / "bogus.pth"
    torch.save({"model": {"not.a.layer": torch.zeros(3)}}, bogus)
    proc = train_net(
        "--config-file", instant_config("fcos_instant_test.py"), f"train.output_dir={tmp_path}",
        f"train.init_checkpoint={bogus}", "train.max_iter=1", check=False,
    )
    assert proc.returncode != 0 and "None of the model's" in proc.stderr


def test_override_typo_is_a_clear_error(tmp_path):
    proc = train_net(
        "--config-file", instant_config("fcos_instant_test.py"), f"train.output_dir={tmp_path}", "train.max_itr=5",
        check=False,
    )
    assert proc.returncode != 0
    assert "'train.max_itr' does not exist" in proc.stderr and "Did you mean train.max_iter" in proc.stderr
    assert not (tmp_path / "model_final.pth").exists()


def test_eval_only_without_weights_is_a_clear_error(tmp_path):
    proc = train_net("--config-file", instant_config("fcos_instant_test.py"), "--eval-only", f"train.output_dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "--eval-only needs weights" in proc.stderr


def test_fp16_amp_on_cpu_is_refused_and_bf16_trains(tmp_path):
    proc = train_net(
        "--config-file", instant_config("fcos_instant_test.py"), f"train.output_dir={tmp_path / 'fp16'}",
        "train.amp.enabled=True", "train.amp.dtype=float16", check=False,
    )
    assert proc.returncode != 0 and "train.amp.dtype=bfloat16" in proc.stderr
    # bf16 (the CPU default dtype) trains: FCOS's GIoU loss used to fail under autocast
    train_net("--config-file", instant_config("fcos_instant_test.py"), f"train.output_dir={tmp_path / 'bf16'}",
              "train.amp.enabled=True", "train.max_iter=2", "train.eval_period=0")
    assert (tmp_path / "bf16" / "model_final.pth").is_file()


def test_missing_config_file_is_a_clear_error(tmp_path):
    proc = train_net("--config-file", "configs/does_not_exist.py", check=False)
    assert proc.returncode != 0 and "does_not_exist.py" in proc.stderr and "model-zoo" in proc.stderr


def test_config_file_accepts_a_zoo_name(tmp_path):
    proc = train_net(
        "--config-file", "quick_schedules/fcos_instant_test.py", f"train.output_dir={tmp_path}", "train.max_iter=2",
    )
    assert (tmp_path / "model_final.pth").is_file(), proc.stdout[-500:]
