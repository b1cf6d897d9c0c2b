"""tools/plot_metrics.py on hand-written metrics.json files in Detectron2's format (training rows,
evaluation rows, NaN AP, a resumed run whose iterations go back) and on a real instant-test run."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import plot_metrics  # noqa: E402

pytest.importorskip("matplotlib")


def write_run(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")  # json writes NaN as NaN, as Detectron2's JSONWriter does
    return str(folder)


def train_row(it, loss, **extra):
    return {"iteration": it, "total_loss": loss, "loss_cls": loss / 2, "lr": 0.01, "time": 0.3, "data_time": 0.01,
            "eta_seconds": 5.0, **extra}


def test_resumed_run_keeps_the_later_values_and_drops_the_stale_tail(tmp_path):
    rows = [train_row(i, 10.0 - i) for i in (1, 3, 5, 7, 9)]
    rows[-1]["bbox/AP"] = 1.5  # evaluation merged into the row of its iteration
    rows.append({"iteration": 10, "bbox/AP": 2.0, "bbox/AP50": float("nan")})  # final evaluation row
    # resumed from the checkpoint of iteration 5: iterations 7.. are logged again, with other values
    rows += [train_row(i, 100.0 + i) for i in (7, 9, 11)]
    rows.append({"iteration": 12, "bbox/AP": 3.0, "bbox/AP50": 4.0})
    series = plot_metrics.read_metrics(write_run(tmp_path / "run", rows))
    assert series["total_loss"] == ([1, 3, 5, 7, 9, 11], [9.0, 7.0, 5.0, 107.0, 109.0, 111.0])
    # the first run's evaluations at 9 and 10 came after the resume point: dropped
    assert series["bbox/AP"] == ([12], [3.0])
    assert series["bbox/AP50"] == ([12], [4.0])  # the NaN is gone with the stale segment anyway
    assert series["lr"][0] == [1, 3, 5, 7, 9, 11]


def test_nan_values_and_non_numeric_fields_are_left_out(tmp_path):
    rows = [train_row(1, 2.0, note="text"), {"iteration": 2, "bbox/AP": float("nan"), "bbox/AP50": 0.5}]
    series = plot_metrics.read_metrics(write_run(tmp_path / "r", rows))
    assert "bbox/AP" not in series and series["bbox/AP50"] == ([2], [0.5]) and "note" not in series


def test_default_keys_pick_losses_lr_ap_and_method_quantities_not_timings():
    runs = [
        {k: ([1], [1.0]) for k in ("total_loss", "loss_cls", "loss_box_reg", "lr", "time", "data_time", "eta_seconds",
                                   "bbox/AP", "bbox/AP-rectangle", "mal/num_selected_per_bag", "num_pos_anchors")},
        {k: ([1], [1.0]) for k in ("total_loss", "loss_o2o_cls", "date/num_o2o_matched", "alwa_weight",
                                   "obj_pred_mean_pos", "hcral/x", "align/y")},
    ]
    keys = plot_metrics.select_keys(runs, plot_metrics.DEFAULT_KEYS)
    assert keys == [
        "total_loss", "loss_box_reg", "loss_cls", "loss_o2o_cls", "lr", "bbox/AP",
        "mal/num_selected_per_bag", "date/num_o2o_matched", "alwa_weight", "obj_pred_mean_pos", "align/y", "hcral/x",
    ]


def test_cli_overlays_runs_and_handles_keys_missing_in_some(tmp_path, capsys):
    a = write_run(tmp_path / "mal_run", [train_row(i, 5.0 - i / 10, **{"mal/depression_ratio": i / 20}) for i in range(0, 20, 2)])
    b = write_run(tmp_path / "date_run", [train_row(i, 8.0 - i / 5, **{"date/num_o2o_matched": 2.0}) for i in range(0, 20, 2)])
    out_png = tmp_path / "curves.png"
    assert plot_metrics.main([a, os.path.join(b, "metrics.json"), "--output", str(out_png)]) == 0
    printed = capsys.readouterr().out
    assert "5 panels (total_loss, loss_cls, lr, mal/depression_ratio, date/num_o2o_matched) for 2 run(s)" in printed
    from PIL import Image

    with Image.open(out_png) as im:
        assert im.format == "PNG" and im.size[0] > 1000
    # explicit keys and labels; a key no run has is reported, the others still drawn
    assert plot_metrics.main([a, b, "--keys", "loss_*", "bbox/AP", "--labels", "MAL", "DATE", "--output", str(out_png)]) == 0
    captured = capsys.readouterr()
    assert "1 panels (loss_cls)" in captured.out and "no run has a key matching 'bbox/AP'" in captured.err


def test_cli_errors(tmp_path, capsys):
    assert plot_metrics.main([str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text('{"iteration": 1, "total_loss": 1.0}\nnot json\n')
    assert plot_metrics.main([str(bad)]) == 2
    assert "metrics.json:2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot_metrics.main([str(bad), str(bad), "--labels", "one"])


def test_real_instant_run(tmp_path, capsys, instant_run):
    """metrics.json as the trainer writes it (10 iterations of the ALWA instant test + an evaluation)."""
    from _requires import detectron2_or_skip

    detectron2_or_skip()
    out = instant_run("retinanet_alwa_instant_test.py").output
    png = tmp_path / "real.png"
    assert plot_metrics.main([str(out), "--output", str(png)]) == 0
    printed = capsys.readouterr().out
    for key in ("total_loss", "loss_cls", "loss_box_reg", "lr", "alwa_weight"):
        assert key in printed
    series = plot_metrics.read_metrics(str(out))
    assert series["alwa_weight"][0] == list(range(10))  # log_period 1
    assert png.stat().st_size > 10_000


def test_an_eval_only_line_of_an_earlier_checkpoint_is_no_restart(tmp_path):
    # --eval-only of model_0000004.pth appended after the run: its line goes back to iteration 4,
    # but only a training row (with lr) starts a resumed segment.
    rows = [train_row(i, 10.0 - i) for i in range(10)]
    rows[-1]["bbox/AP"] = 2.0  # the final evaluation shares the row of the last iteration
    rows.append({"iteration": 4, "bbox/AP": 1.0})
    series = plot_metrics.read_metrics(write_run(tmp_path / "run", rows))
    assert series["total_loss"][0] == list(range(10))
    assert series["bbox/AP"] == ([4, 9], [1.0, 2.0])
