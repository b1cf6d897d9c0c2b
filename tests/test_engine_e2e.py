"""The foundation end to end: train_net.py on the instant tests, --eval-only, --resume,
two CPU processes, and the errors users hit (bad checkpoint, override typo, AMP on CPU)."""
import os
import shutil

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from _cli import instant_config, train_net  # noqa: E402
from conftest import SHORT_RUN  # noqa: E402

from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402


FCOS = "fcos_instant_test.py"


@pytest.mark.parametrize("name", ["retinanet_instant_test.py", FCOS])
def test_instant_test_trains_then_eval_only_prints_ap(name, instant_run):
    run = instant_run(name)
    assert run.final.is_file()
    train_rows = [m for m in run.metrics() if "total_loss" in m]
    assert train_rows[-1]["iteration"] == 9 and "lr" in train_rows[-1]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run.output)), "no TensorBoard file"
    # 10 iterations leave every score under the test threshold; 0 still evaluates the ranking.
    log = run.eval_only("model.test_score_thresh=0.0")
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log and "|  AP   |" in log


def test_eval_only_with_resume_uses_last_checkpoint(instant_run, tmp_path):
    run = instant_run(FCOS)
    for name in ("model_final.pth", "model_0000004.pth", "last_checkpoint"):
        (tmp_path / name).symlink_to(run.output / name)
    proc = train_net("--config-file", instant_config(FCOS), "--eval-only", "--resume", f"train.output_dir={tmp_path}")
    log = proc.stdout + proc.stderr
    assert "model_final.pth" in log and "copypaste: AP" in log


def test_instant_fcos_learns(instant_run):
    # An untrained FCOS scores nothing above its 0.2 threshold, so AP > 0 after training means it
    # learned. 50 of the config's 100 iterations (its schedule follows max_iter) at its own batch of
    # 4 reach AP 2.6 with one thread and 3.5 with two (measured), well clear of 0.
    run = instant_run(FCOS, "train.max_iter=50", "train.log_period=10", "train.checkpointer.period=1000",
                      "dataloader.train.total_batch_size=4")
    ap_line = [l for l in run.log.splitlines() if "copypaste: " in l][-1]
    assert float(ap_line.split("copypaste: ")[1].split(",")[0]) > 0.0, ap_line


def test_resume_continues_at_the_right_iteration_with_the_same_lr(instant_run, tmp_path):
    # The short run: 10 iterations, checkpoints after 5 and 10, lr x0.1 at 8 (the config's 80 of 100).
    # Resumed from its checkpoint after 5 (a copy), the run must retrain 5-9 under the same schedule.
    full = instant_run(FCOS)
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(full.output / "model_0000004.pth", part)
    (part / "last_checkpoint").write_text("model_0000004.pth")
    proc = train_net("--config-file", full.config, "--resume", f"train.output_dir={part}", *SHORT_RUN)
    assert "Starting training from iteration 5" in proc.stdout + proc.stderr
    lr_full = {m["iteration"]: m["lr"] for m in full.metrics() if "lr" in m}
    lr_part = {m["iteration"]: m["lr"] for m in read_metric_rows(part) if "lr" in m}
    assert min(lr_part) == 5
    for it in range(5, 10):
        assert lr_part[it] == pytest.approx(lr_full[it]), it
    assert lr_part[9] < lr_part[5], "the step at iteration 8 was lost on resume"
    # FCOS's loss normaliser (an EMA Detectron2 keeps in a plain attribute, initial value 300)
    # travels in the trainer state of every checkpoint.
    saved = torch.load(part / "model_0000004.pth", weights_only=False)["trainer"]["ema_state"]
    assert 0 < saved[""]["loss_normalizer"] < 300


def test_checkpoint_of_another_model_is_a_clear_error(instant_run, tmp_path):
    proc = train_net(
        "--config-file", instant_config("retinanet_instant_test.py"), "--eval-only",
        f"train.output_dir={tmp_path}", f"train.init_checkpoint={instant_run(FCOS).final}", check=False,
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
