"""benchmarks/accuracy.py (running), accuracy_run_config.py (the run config), accuracy_report.py
(the report) and the presets they apply (alignment_det.config.presets)."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from alignment_det.data import register_coco_json, register_voc  # noqa: E402
from alignment_det.engine import Trainer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.utils.metrics_file import read_metrics  # noqa: E402
from alignment_det.config.presets import (  # noqa: E402
    apply_preset, get_preset, optimizer_family,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("accuracy_benchmark", os.path.join(REPO, "benchmarks", "accuracy.py"))
accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy)
import accuracy_report  # noqa: E402  benchmarks/ is on sys.path once accuracy.py is loaded
from _cli import accuracy_runner_in_process  # noqa: E402
from _config_checks import ABSENT, assert_differs_only_in  # noqa: E402
from conftest import MINI_SPLIT  # noqa: E402

SYNTH_TRAIN, SYNTH_VAL = "synthetic_shapes_train", "synthetic_shapes_val"
SYNTH_MINI = MINI_SPLIT  # the end-to-end runs' evaluation set (what they check is not AP)


def default_configs():
    """Every config of the default pairs that this checkout has (ATSS / HCRAL once they exist)."""
    return [path for *_, path in accuracy.select_configs(None, None, log=lambda *_: None)]


def preset_applied(path, preset, **kw):
    cfg = load_config(path)
    kwargs = dict(train_dataset=SYNTH_TRAIN, test_dataset=SYNTH_VAL, num_classes=3, seed=7, output_dir="/tmp/unused")
    kwargs.update(kw)
    return apply_preset(cfg, preset, **kwargs)


def shared_settings(cfg):
    """What the preset must make equal across methods, read back from the config."""
    det = cfg.model
    aug = cfg.dataloader.train.mapper.augmentations
    return dict(
        depth=det.backbone.bottom_up.stages.depth,
        norm=(det.backbone.bottom_up.stem.norm, det.backbone.bottom_up.stages.norm),
        freeze_at=det.backbone.bottom_up.freeze_at,
        fpn_channels=det.backbone.out_channels,
        head_conv_dims=list(det.head.conv_dims),
        head_in_channels=[s.channels for s in det.head.input_shape],
        num_classes=det.num_classes,
        train_aug=OmegaConf.to_container(aug),
        test_short_edge=cfg.dataloader.test.mapper.augmentations[0].short_edge_length,
        max_size=cfg.dataloader.test.mapper.augmentations[0].max_size,
        batch=cfg.dataloader.train.total_batch_size,
        datasets=(cfg.dataloader.train.dataset.names, cfg.dataloader.test.dataset.names),
        evaluator=cfg.dataloader.evaluator._target_.__name__,
        max_iter=cfg.train.max_iter,
        seed=cfg.train.seed,
        init_checkpoint=cfg.train.init_checkpoint,
        eval_period=cfg.train.eval_period,
        schedule=OmegaConf.to_container(cfg.lr_multiplier),
    )


# ------------------------------------------------------------------------------------ presets
@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_preset_applies_identically_to_every_default_config(name):
    preset = get_preset(name)
    configs = default_configs()
    assert len(configs) >= 7  # RetinaNet, MAL, RetinaNet-Conf, +ALWA, FCOS, DATE-F, DATE-R (+ ATSS pair)
    settings = {os.path.basename(p): shared_settings(preset_applied(p, preset)) for p in configs}
    first = settings["retinanet_R50.py"]
    for config, s in settings.items():
        assert s == first, f"{config} differs from retinanet_R50.py under preset {name}"
    assert first["depth"] == preset.depth and first["norm"] == (preset.norm, preset.norm)
    assert first["freeze_at"] == 0 and first["init_checkpoint"] == ""  # from scratch, everything trains
    assert first["fpn_channels"] == preset.channels and first["head_conv_dims"] == [preset.channels] * preset.head_convs
    assert first["head_in_channels"] == [preset.channels] * 5
    assert first["batch"] == preset.batch_size and first["max_iter"] == preset.max_iter and first["seed"] == 7
    assert tuple(first["train_aug"][0]["short_edge_length"]) == preset.train_short_edges
    assert first["test_short_edge"] == preset.test_short_edge and first["num_classes"] == 3
    assert first["evaluator"] == "COCOEvaluator" and first["datasets"] == (SYNTH_TRAIN, SYNTH_VAL)


def test_each_method_keeps_its_optimizer_family_at_the_preset_lr():
    preset = get_preset("cpu")
    for path in default_configs():
        cfg = preset_applied(path, preset)
        family = optimizer_family(cfg.optimizer)
        expected = "AdamW" if os.path.basename(path).startswith("date_") else "SGD"
        assert family == expected, path
        assert cfg.optimizer.lr == preset.lr[family]
        assert cfg.train.clip_grad.enabled
    date = preset_applied(os.path.join(REPO, "configs", "date_F_R50_1x.py"), preset)
    # DATE keeps its own clipping (0.1); the others get the preset's. From scratch its backbone lr
    # factor (x0.1, there to protect pretrained weights) becomes 1, and the built optimizer says so.
    assert date.train.clip_grad.clip_value == 0.1 and date.optimizer.params.lr_factor_func.factor == 1.0
    date.optimizer.params.model = instantiate(date.model)
    assert {g["lr"] for g in instantiate(date.optimizer).param_groups} == {preset.lr["AdamW"]}
    retina = preset_applied(os.path.join(REPO, "configs", "retinanet_R50.py"), preset)
    assert retina.train.clip_grad.clip_value == preset.clip_value


def test_horizon_dependent_hyper_parameters_follow_the_preset():
    mal = os.path.join(REPO, "configs", "mal_R50.py")
    for preset in (get_preset("cpu"), get_preset("cpu", max_iter=300)):
        cfg = preset_applied(mal, preset)
        assert instantiate(cfg.model).max_iter == preset.max_iter


def test_reduced_budget_keeps_the_schedule_shape():
    cpu = get_preset("cpu")  # 400 it, decays at 300 / 360, warm-up 50, eval every 100
    half = get_preset("cpu", max_iter=200)
    assert (half.max_iter, half.steps, half.warmup_iters, half.eval_period) == (200, (150, 180), 25, 50)
    assert half.name == "cpu@200" and get_preset("cpu", max_iter=400) is cpu
    # instant: 100 it, decay at 80; over 1 iteration the decay (at round(0.8) = 1) would never apply.
    assert get_preset("instant", max_iter=1).steps == () and get_preset("instant", max_iter=10).steps == (8,)
    with pytest.raises(KeyError, match="choose one of"):
        get_preset("tpu")


def test_cpu_preset_builds_the_same_backbone_for_every_method():
    counts = {}
    for path in default_configs():
        model = instantiate(preset_applied(path, "cpu").model)
        # The ResNet; the FPN's P6 differs by design (from C5 for RetinaNet, from P5 for FCOS).
        counts[os.path.basename(path)] = sum(p.numel() for p in model.backbone.bottom_up.parameters())
    assert len(set(counts.values())) == 1, counts


def test_gpu_preset_builds_and_trains_one_iteration_on_cpu():
    preset = get_preset("gpu")
    cfg = preset_applied(os.path.join(REPO, "configs", "retinanet_R50.py"), preset)
    cfg.train.device = "cpu"
    cfg.dataloader.train.total_batch_size = 1  # the preset's 16 images would take minutes on a CPU
    cfg.dataloader.train.num_workers = 0
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    resnet = model.backbone.bottom_up
    assert len(resnet.res4) == 6 and resnet.res5[-1].conv3.out_channels == 2048  # R50 (R18: 2 basic blocks)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    # The synthetic images (~128 px) are resized up to the preset's short side.
    assert min(batch[0]["image"].shape[-2:]) in preset.train_short_edges
    with EventStorage(0):
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()


# ------------------------------------------------------------------------------------ datasets
def _tiny_coco(tmp_path, name, categories):
    root = tmp_path / name
    root.mkdir()
    json_file = root / "ann.json"
    json_file.write_text(json.dumps(dict(
        images=[dict(id=1, file_name="a.jpg", width=64, height=48)],
        annotations=[dict(id=1, image_id=1, category_id=1, bbox=[4, 4, 20, 20], area=400, iscrowd=0)],
        categories=[dict(id=i + 1, name=c) for i, c in enumerate(categories)],
    )))
    return str(json_file), str(root)


def test_class_count_is_read_from_the_dataset(tmp_path):
    json_file, root = _tiny_coco(tmp_path, "two", ["cat", "dog"])
    register_coco_json("acc_test_two_classes", json_file, root)
    # COCO json: thing_classes appear in the metadata only once the json is loaded.
    assert accuracy.dataset_classes("acc_test_two_classes") == ["cat", "dog"]
    assert accuracy.dataset_num_classes("acc_test_two_classes", "acc_test_two_classes") == 2
    assert accuracy.dataset_num_classes(SYNTH_TRAIN, SYNTH_VAL) == 3
    voc = tmp_path / "voc"
    voc.mkdir()
    register_voc("acc_test_voc", str(voc), "train", class_names=["a", "b", "c", "d"])
    assert accuracy.dataset_classes("acc_test_voc") == ["a", "b", "c", "d"]  # from metadata, not loaded
    with pytest.raises(ValueError, match="different classes"):
        accuracy.dataset_num_classes("acc_test_two_classes", SYNTH_VAL)
    with pytest.raises(KeyError, match="--register"):
        accuracy.dataset_classes("acc_test_never_registered")
    # ...and the run config builds the model for that count.
    run_dir = str(tmp_path / "run")
    settings = accuracy.run_settings(
        config_file=os.path.join(REPO, "configs", "retinanet_alwa_R50.py"), preset="cpu", max_iter=None,
        train_dataset="acc_test_two_classes", test_dataset="acc_test_two_classes", num_classes=2, seed=0,
        run_dir=run_dir, register=[], overrides=[],
    )
    cfg = load_config(accuracy.prepare_run_dir(run_dir, settings))
    assert instantiate(cfg.model).head.cls_score.out_channels == 9 * 2  # 9 anchors x 2 classes


def test_changed_settings_of_a_run_folder_are_an_error(tmp_path):
    accuracy.prepare_run_dir(str(tmp_path), {"preset": "A"})
    accuracy.prepare_run_dir(str(tmp_path), {"preset": "A"})  # same: fine
    with pytest.raises(RuntimeError, match="other settings"):
        accuracy.prepare_run_dir(str(tmp_path), {"preset": "B"})


def _instant_fcos_settings(run_dir, **kw):
    settings = dict(
        config_file=os.path.join(REPO, "configs", "fcos_R50.py"), preset="instant", max_iter=None,
        train_dataset=SYNTH_TRAIN, test_dataset=SYNTH_VAL, num_classes=3, seed=0, run_dir=run_dir,
        register=[], overrides=[],
    )
    return accuracy.run_settings(**{**settings, **kw})


def test_configs_of_known_pairs_keep_their_pair():
    selected = accuracy.select_configs(None, ["date_F_R50_1x.py", "fcos_R50.py", "hcral_atss_R50_1x.py"])
    assert [s[:3] for s in selected] == [
        ("fcos", "fcos_R50.py", "date_F_R50_1x.py"),
        ("fcos", "fcos_R50.py", "fcos_R50.py"),
        ("atss", None, "hcral_atss_R50_1x.py"),  # its baseline was not chosen: no ΔAP
    ]


def test_a_config_typed_as_a_path_is_the_zoo_config():
    # `--configs configs/fcos_R50.py` must find the pair, the label and the extra evaluations that
    # `fcos_R50.py` finds; a project config is named by its path from the checkout root.
    typed = [os.path.join("configs", "date_F_R50_1x.py"), os.path.join(REPO, "configs", "fcos_R50.py"),
             os.path.join(REPO, "projects", "DATE", "configs", "date_F_R50_o2o_only.py")]
    assert [s[:3] for s in accuracy.select_configs(None, typed)] == [
        ("fcos", "fcos_R50.py", "date_F_R50_1x.py"),
        ("fcos", "fcos_R50.py", "fcos_R50.py"),
        ("fcos_controls", "fcos_R50.py", "projects/DATE/configs/date_F_R50_o2o_only.py"),
    ]


def test_main_adds_the_nms_evaluation_of_a_config_typed_as_a_path(tmp_path):
    commands = []

    def runner(cmd, log_path):
        # a fake train_net.py: one final evaluation where the real one would write it
        commands.append(cmd)
        out = os.path.dirname(log_path)
        evaluating = "--eval-only" in cmd
        ap = 7.0 if evaluating else 5.0
        if not evaluating:  # training leaves the model the evaluation loads
            open(os.path.join(out, "model_final.pth"), "wb").close()
        with open(os.path.join(out, "metrics.json"), "a") as f:
            f.write(json.dumps({"iteration": 1, "bbox/AP": ap, "bbox/AP50": ap, "bbox/AP75": ap}) + "\n")
        return 0

    report = accuracy.main(["--preset", "instant", "--max-iter", "2", "--configs", "configs/date_F_R50_1x.py",
                            "--seeds", "0", "--train-dataset", SYNTH_TRAIN, "--test-dataset", SYNTH_VAL,
                            "--output", str(tmp_path)], runner=runner)
    assert set(report["configs"]) == {"date_F_R50_1x.py", "date_F_R50_1x.py [nms]", "date_F_R50_1x.py [o2m]"}
    assert report["configs"]["date_F_R50_1x.py"]["label"] == "DATE-F"
    assert report["configs"]["date_F_R50_1x.py [nms]"]["runs"][0]["metrics"]["bbox/AP"] == 7.0
    assert ["--eval-only" in cmd for cmd in commands] == [False, True, True]
    assert "model.test_nms_thresh=0.6" in commands[1] and "model.test_branch=o2m" in commands[2]
    report_md = (tmp_path / "results.md").read_text()
    assert "| DATE-F, evaluated with NMS 0.6 |" in report_md
    assert "| DATE-F, its one-to-many branch evaluated (with NMS) |" in report_md


def test_a_moved_run_folder_is_the_same_run(tmp_path):
    # Committed results were trained in another folder and checkout: only where they are differs.
    here = dict(config_file="/a/checkout/configs/fcos_R50.py", preset="cpu_long", seed=0, run_dir="/a/out/runs/fcos_R50/seed0")
    moved = dict(here, config_file=str(tmp_path / "repo" / "configs" / "fcos_R50.py"), run_dir=str(tmp_path))
    (tmp_path / "settings.json").write_text(json.dumps(here))
    accuracy.prepare_run_dir(str(tmp_path), moved)
    assert json.loads((tmp_path / "settings.json").read_text())["run_dir"] == str(tmp_path)  # the new place
    for other in (dict(moved, preset="cpu"), dict(moved, config_file="/x/configs/atss_R50_1x.py")):
        with pytest.raises(RuntimeError, match="holds other settings"):
            accuracy.prepare_run_dir(str(tmp_path), other)


def test_alignment_evaluator_joins_the_coco_evaluator(tmp_path):
    DatasetCatalog.get(SYNTH_VAL)  # the COCOEvaluator reads the synthetic json
    run_dir = str(tmp_path / "on")
    cfg = load_config(accuracy.prepare_run_dir(run_dir, _instant_fcos_settings(run_dir)))
    coco, alignment = instantiate(cfg.dataloader.evaluator)
    assert type(coco).__name__ == "COCOEvaluator" and coco._metadata.name == SYNTH_VAL
    assert type(alignment).__name__ == "AlignmentEvaluator" and alignment._dataset_name == SYNTH_VAL
    # Turned off in the settings: the COCO evaluator alone, so no alignment column.
    run_dir = str(tmp_path / "off")
    cfg = load_config(accuracy.prepare_run_dir(run_dir, _instant_fcos_settings(run_dir, alignment_evaluator=False)))
    assert type(instantiate(cfg.dataloader.evaluator)).__name__ == "COCOEvaluator"


def test_the_run_config_is_the_same_file_for_every_run_and_its_settings_are_json(tmp_path):
    paths = [accuracy.prepare_run_dir(str(tmp_path / f"seed{k}"), _instant_fcos_settings(str(tmp_path / f"seed{k}"), seed=k))
             for k in (0, 1)]
    texts = {open(p).read() for p in paths}
    assert texts == {open(os.path.join(REPO, "benchmarks", "accuracy_run_config.py")).read()}
    assert [json.loads((tmp_path / f"seed{k}" / "settings.json").read_text())["seed"] for k in (0, 1)] == [0, 1]
    assert [load_config(p).train.seed for p in paths] == [0, 1]


def test_a_pair_with_a_missing_config_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(accuracy, "DEFAULT_PAIRS", accuracy.DEFAULT_PAIRS + (("nope", "nope_R50.py", ("fcos_R50.py",)),))
    notes = []
    selected = accuracy.select_configs(["fcos", "nope"], None, log=notes.append)
    assert [s[2] for s in selected] == ["fcos_R50.py", "date_F_R50_1x.py", "date_R_R50_1x.py"]
    assert notes == ["note: pair 'nope' skipped: nope_R50.py not in this checkout"]


# ------------------------------------------------------------------------------------ report
def test_mean_and_spread_over_seeds():
    runs = [dict(metrics={"bbox/AP": 30.0, "bbox/AP50": 50.0}, s_per_iter=0.5, wall_s=100.0, evaluated_at=200),
            dict(metrics={"bbox/AP": 34.0, "bbox/AP50": 54.0}, s_per_iter=0.7, wall_s=40.0, evaluated_at=200),
            dict(failed=True)]
    agg = accuracy_report.aggregate(runs)
    # mean (30 + 34) / 2 = 32; sample std sqrt(((30-32)^2 + (34-32)^2) / (2-1)) = sqrt(8) = 2.83
    assert agg["metrics"]["bbox/AP"]["mean"] == 32.0
    assert math.isclose(agg["metrics"]["bbox/AP"]["std"], math.sqrt(8))
    assert (agg["seeds"], agg["failed"], agg["s_per_iter"], agg["wall_s"]) == (2, 1, 0.6, 70.0)
    # training time from s/it x iterations (median of 100 s and 140 s), whatever wall_s recorded:
    # the second run was resumed after an attempt that left no record
    assert agg["train_s"] == 120.0
    base = accuracy_report.aggregate([dict(metrics={"bbox/AP": 29.0}, s_per_iter=0.4, wall_s=90.0)])
    assert base["metrics"]["bbox/AP"]["std"] is None  # one seed: no spread
    table = accuracy_report.markdown_table(
        [dict(pair="p", label="Base", config="b.py", optimizer="SGD 0.01", agg=base, baseline_agg=base),
         dict(pair="p", label="Method", config="m.py", optimizer="SGD 0.01", agg=agg, baseline_agg=base)],
        alignment_keys=[],
    )
    lines = table.splitlines()
    assert "| 29.0 |" in lines[2] and "(baseline)" in lines[2]
    assert "| 32.0 ± 2.8 | 52.0 ± 2.8 | — | +3.0 |" in lines[3] and "(+1 failed)" in lines[3]
    assert lines[3].endswith("| 0.60 s | 2.0 min |") and "training time / run" in lines[0]


def test_alignment_columns():
    keys = {"bbox/AP", "alignment/pearson_all", "alignment/nms_misranked_share", "alignment/ece50",
            "alignment/iou_by_score_decile-0", "alignment/num_gt"}
    assert accuracy_report.alignment_columns(keys) == ["alignment/pearson_all", "alignment/nms_misranked_share"]
    # Names the table does not know: every scalar, no per-bin values or counts.
    assert accuracy_report.alignment_columns({"alignment/corr", "alignment/bin-1", "alignment/num_gt"}) == ["alignment/corr"]
    assert accuracy_report.alignment_columns({"bbox/AP"}) == []


def test_plateau_rule_by_hand():
    # 3,000 iterations, first drop at 2,550: the last evaluation before it is 2,400; a quarter of the
    # schedule (750) earlier is 1,650, read at the last evaluation at or before it, 1,500.
    curve = [[300, 50.0], [600, 60.0], [900, 66.0], [1200, 67.0], [1500, 67.5], [1800, 67.9], [2100, 68.0],
             [2400, 68.2], [2700, 71.0], [3000, 71.4]]
    p = accuracy_report.plateau(curve, max_iter=3000, first_drop=2550)
    assert (p["iteration"], p["earlier_iteration"]) == (2400, 1500)
    assert math.isclose(p["gain"], 68.2 - 67.5) and p["flat"]
    # Still climbing: 1.1 AP over the quarter is not flat; a drop of 1.1 is not flat either.
    climbing = [c if c[0] != 2400 else [2400, 68.6] for c in curve]
    assert not accuracy_report.plateau(climbing, max_iter=3000, first_drop=2550)["flat"]
    falling = [c if c[0] != 2400 else [2400, 66.4] for c in curve]
    assert not accuracy_report.plateau(falling, max_iter=3000, first_drop=2550)["flat"]
    # Without a drop the whole schedule counts: 3,000 against 2,250 -> 2,100.
    p = accuracy_report.plateau(curve, max_iter=3000, first_drop=None)
    assert (p["iteration"], p["earlier_iteration"], p["flat"]) == (3000, 2100, False)
    # An unfinished run (nothing a quarter before its last evaluation) has no verdict.
    assert accuracy_report.plateau(curve[:2], max_iter=3000, first_drop=2550) is None
    # A curve that has not started learning: 0.6 AP against 0.0 is within 1 AP, but not flat.
    dead = [[75, 0.0], [150, 0.2], [225, 0.6], [300, 3.2]]
    p = accuracy_report.plateau(dead, max_iter=300, first_drop=255)
    assert (p["iteration"], p["earlier_iteration"], p["learning"], p["flat"]) == (225, 150, False, False)
    per_config = {"r.py": dict(baseline="r.py", label="R", runs=[dict(seed=0, ap_curve=dead)])}
    assert "no (not learning yet)" in accuracy_report.plateau_table(per_config, max_iter=300, first_drop=255)


def test_pairs_plot_has_one_panel_per_baseline(tmp_path):
    def cfg(pair, baseline, label, curve):
        return dict(pair=pair, baseline=baseline, label=label, runs=[dict(seed=0, ap_curve=curve)])

    per_config = {
        "fcos_R50.py": cfg("fcos", "fcos_R50.py", "FCOS", [[100, 10.0], [200, 20.0]]),
        "date_F_R50_1x.py": cfg("fcos", "fcos_R50.py", "DATE-F", [[100, 12.0], [200, 21.0]]),
        "o2o.py": cfg("fcos_controls", "fcos_R50.py", "one-to-one only", [[100, 9.0], [200, 15.0]]),
        "atss_R50_1x.py": cfg("atss", "atss_R50_1x.py", "ATSS", [[100, 11.0], [200, 22.0]]),
        "hcral_atss_R50_1x.py": cfg("atss", "atss_R50_1x.py", "HCRAL-ATSS", []),  # unfinished: no curve
        "retinanet_R50.py": cfg("retinanet", "retinanet_R50.py", "RetinaNet", []),  # no finished run at all
    }
    titles = accuracy_report.plot_pairs(per_config, str(tmp_path / "pairs.png"), title="t", steps=[150])
    assert titles == ["against FCOS", "against ATSS"]
    assert (tmp_path / "pairs.png").stat().st_size > 10_000
    table = accuracy_report.plateau_table(per_config, max_iter=200, first_drop=150)
    # A 200-iteration schedule: nothing is 50 iterations before the last evaluation before 150 (100).
    assert "| FCOS | 0 | — | — | — | unfinished |" in table and "DATE-F" not in table


def test_pairs_plot_splits_a_crowded_baseline_into_panels_each_with_the_baseline(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    curve = [[100, 10.0], [200, 20.0]]

    def cfg(pair, label, curve=curve):
        return dict(pair=pair, baseline="fcos_R50.py", label=label, runs=[dict(seed=0, ap_curve=curve)])

    # the cards FCOS panel's count: 12 controls, an ablation, two methods listed last, and an
    # evaluation-only row (no curve), which draws nothing and takes no place
    per_config = {"fcos_R50.py": cfg("fcos", "FCOS")}
    per_config.update({f"c{k}.py": cfg("fcos_controls", f"control {k}") for k in range(12)})
    per_config["abl.py"] = cfg("x_ablations", "ablation")
    per_config["eval_only"] = cfg("fcos", "DATE-F with NMS", curve=[])
    per_config.update({"date_F.py": cfg("fcos", "DATE-F"), "date_R.py": cfg("fcos", "DATE-R")})
    titles = accuracy_report.plot_pairs(per_config, str(tmp_path / "pairs.png"), title="t")
    assert titles == ["against FCOS (1 of 2)", "against FCOS (2 of 2)"]
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    labels = [[line.get_label().replace("\n", " ") for line in ax.get_lines() if not line.get_label().startswith("_")]
              for ax in axes]
    # 15 configs besides the baseline, split evenly, the baseline (black) first in each panel
    assert [len(ls) for ls in labels] == [9, 8] and all(len(ls) <= accuracy_report.PANEL_CONFIGS for ls in labels)
    assert all(ls[0] == "FCOS (seed 0)" for ls in labels)
    # the default pair's methods first, the ablation last; every config drawn once
    assert labels[0][1:3] == ["DATE-F (seed 0)", "DATE-R (seed 0)"] and labels[1][-1] == "ablation (seed 0)"
    drawn_once = [label for ls in labels for label in ls[1:]]
    assert sorted(drawn_once) == sorted(f"{c['label']} (seed 0)" for n, c in per_config.items()
                                        if n not in ("fcos_R50.py", "eval_only"))
    for ax in axes:  # every line of a panel its own colour
        colors = [matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert len(set(colors)) == len(colors) and colors[0] == "#000000"
    for n in (1, 10, 11, 20, 21, 40):
        assert len({matplotlib.colors.to_hex(c) for c in accuracy_report.distinct_colors(n)}) == n


def test_pairs_plot_tells_controls_and_ablations_apart():
    # Every pair name the benchmark defines gets the style of its kind; a method of a default pair
    # (or a run outside any pair) is solid.
    styles = {name: accuracy_report._line_style(name) for name, _, _ in accuracy.DEFAULT_PAIRS + accuracy.CONTROL_PAIRS}
    assert {n for n, s in styles.items() if s == "-"} == {n for n, _, _ in accuracy.DEFAULT_PAIRS}
    assert {n for n, s in styles.items() if s == "-."} == {"mal_ablations", "hcral_retinanet_ablations", "hcral_atss_ablations"}
    assert {n for n, s in styles.items() if s == "--"} == {
        "retinanet_controls", "fcos_controls", "atss_controls", "alwa_controls"}
    assert accuracy_report._line_style(None) == "-"
    # two seeds of one method share colour and line style: their markers differ
    assert len({accuracy_report._seed_marker(seed) for seed in range(len(accuracy_report.SEED_MARKERS))}) == 5


def test_summary_of_a_resumed_run(tmp_path):
    # metrics.json of a run interrupted after iteration 19 and resumed: iteration 19 appears twice.
    lines = [
        dict(iteration=9, total_loss=2.0, time=1.0),
        dict(iteration=19, total_loss=1.5, time=1.0, **{"bbox/AP": 1.0, "bbox/AP50": 2.0, "bbox/AP75": 0.5}),
        dict(iteration=19, total_loss=1.4, time=3.0),
        dict(iteration=29, total_loss=1.0, time=5.0, data_time=0.1, **{"alignment/corr": 0.3}),
        dict(iteration=30, **{"bbox/AP": 4.0, "bbox/AP50": 8.0, "bbox/AP75": 2.0, "alignment/corr": 0.4}),
    ]
    path = tmp_path / "metrics.json"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    s = accuracy_report.summarize_run(read_metrics(str(path), finite_only=False), max_iter=30)
    assert s["metrics"] == {"bbox/AP": 4.0, "bbox/AP50": 8.0, "bbox/AP75": 2.0, "alignment/corr": 0.4}
    assert s["evaluated_at"] == 30
    assert s["loss_curve"] == [[10, 2.0], [20, 1.4], [30, 1.0]]  # after i + 1 iterations
    assert s["ap_curve"] == [[20, 1.0], [30, 4.0]]  # periodic eval after 20 its, final after 30
    assert s["s_per_iter"] == 5.0  # median of iterations >= 20 only (start-up excluded)


def test_a_nan_final_ap_is_reported_not_replaced_by_an_earlier_evaluation(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("\n".join(json.dumps(r) for r in [
        dict(iteration=9, total_loss=3.0, **{"bbox/AP": 2.0}), dict(iteration=20, **{"bbox/AP": float("nan")}),
    ]) + "\n")
    s = accuracy_report.summarize_run(read_metrics(str(path), finite_only=False), max_iter=20)
    assert s["evaluated_at"] == 20 and math.isnan(s["metrics"]["bbox/AP"])


def test_a_metric_nan_at_one_of_two_seeds_gives_nan_mean_and_spread_not_a_crash():
    # e.g. an empty score-by-IoU bin at one seed (seen on DATE-F evaluated with NMS)
    runs = [dict(metrics={"bbox/AP": 80.0, "alignment/bin": float("nan")}),
            dict(metrics={"bbox/AP": 81.0, "alignment/bin": 0.5})]
    agg = accuracy_report.aggregate(runs)["metrics"]
    assert agg["bbox/AP"]["mean"] == 80.5 and math.isclose(agg["bbox/AP"]["std"], 0.5 ** 0.5)
    assert math.isnan(agg["alignment/bin"]["mean"]) and math.isnan(agg["alignment/bin"]["std"])


def test_an_interrupted_run_is_resumed_and_a_finished_one_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    run_dir = str(tmp_path)
    (tmp_path / "wall_times.json").write_text(json.dumps([dict(wall_s=5.0, returncode=-9)]))  # killed once
    calls = []

    def runner(cmd, log_path):
        calls.append(cmd)
        with open(os.path.join(run_dir, "metrics.json"), "a") as f:
            f.write(json.dumps({"iteration": 3, "bbox/AP": 1.0, "bbox/AP50": 2.0, "bbox/AP75": 0.0}) + "\n")
        return 0

    kw = dict(max_iter=3, num_gpus=1, keep_checkpoints=False, log=lambda *_: None)
    result = accuracy.run_one(run_dir, "cfg.py", runner=runner, **kw)
    assert "--resume" in calls[0] and result["attempts"] == 2 and result["wall_s"] > 5.0
    # the threads each attempt's training processes had (the killed attempt did not record them)
    assert result["omp_num_threads"] == ["3", "unrecorded"]
    again = accuracy.run_one(run_dir, "cfg.py", runner=lambda *a: pytest.fail("trained a finished run"), **kw)
    assert again == result


def test_control_pairs_resolve_and_share_the_baseline_runs():
    rows = accuracy.select_configs(["fcos_controls", "atss_controls", "retinanet_controls"], None, log=pytest.fail)
    names = [name for _, _, name, _ in rows]
    assert names.count("fcos_R50.py") == 1 and "projects/DATE/configs/date_F_R50_o2o_only.py" in names
    assert all(os.path.isfile(path) for *_, path in rows)
    paths = {name: path for _, _, name, path in rows}
    o2o_only = load_config(paths["projects/DATE/configs/date_F_R50_o2o_only.py"])
    assert o2o_only.model.lambda_o2m == 0.0 and o2o_only.model.lambda_o2o == 1.0
    o2m_only = load_config(paths["projects/DATE/configs/date_F_R50_o2m_only.py"])
    assert o2m_only.model.lambda_o2o == 0.0 and o2m_only.model.lambda_o2m == 1.0
    assert o2m_only.model.test_branch == "o2m" and "test_branch" not in o2o_only.model
    assert "o2m_center_sampling_radius" not in o2m_only.model
    sampled = load_config(paths["projects/DATE/configs/date_F_R50_o2m_only_center_sampling.py"])
    assert_differs_only_in(sampled.model, o2m_only.model, {"o2m_center_sampling_radius": (1.5, ABSENT)})
    with_giou = load_config(paths["projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou.py"])
    assert_differs_only_in(with_giou.model, sampled.model, {"o2m_box_loss": ("giou", ABSENT)})
    # then mmdet FCOSHead's two switches, one config each, each adding one head key to the last
    previous = with_giou
    for suffix, key in (("_normbbox", "o2m_norm_on_bbox"), ("_normbbox_ctr_on_reg", "o2m_centerness_on_reg")):
        step = load_config(paths[f"projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou{suffix}.py"])
        assert_differs_only_in(step.model, previous.model, {f"head.{key}": (True, ABSENT)})
        previous = step
    # DATE-F with both branches and its one-to-many branch in that last form: DATE-F plus the four keys
    fcos_form = load_config(paths["projects/DATE/configs/date_F_R50_o2m_fcos_form.py"]).model
    date_f = load_config(accuracy.resolve_config("date_F_R50_1x.py")).model
    assert_differs_only_in(fcos_form, date_f, {
        "o2m_center_sampling_radius": (1.5, ABSENT), "o2m_box_loss": ("giou", ABSENT),
        "head.o2m_norm_on_bbox": (True, ABSENT), "head.o2m_centerness_on_reg": (True, ABSENT)})
    # its one-to-many branch is evaluated too, as DATE-F's is
    date_f_o2m = [v for v in accuracy.EVAL_VARIANTS["date_F_R50_1x.py"] if v[0] == "o2m"]
    assert [(t, o) for t, _, o in accuracy.EVAL_VARIANTS["projects/DATE/configs/date_F_R50_o2m_fcos_form.py"]] == [
        (t, o) for t, _, o in date_f_o2m]
    # the same with separate one-to-many towers: one head key more, its o2m branch evaluated too
    separate = load_config(paths["projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers.py"]).model
    assert_differs_only_in(separate, fcos_form, {"head.share_subnets": (False, True)})
    # and with the one-to-many predictor's own per-level scales: one head key more again
    own_scales = load_config(paths["projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales.py"]).model
    assert_differs_only_in(own_scales, separate, {"head.share_scales": (False, ABSENT)})
    # and with the one-to-one loss stopped at the head: one head key more again
    detached = load_config(paths["projects/DATE/configs/date_F_R50_o2m_fcos_form_o2o_detached.py"]).model
    assert_differs_only_in(detached, own_scales, {"head.o2o_detach_features": (True, ABSENT)})
    for name in ("separate_towers", "separate_towers_scales", "separate_towers_frozen_scales",
                 "separate_towers_scales_o2o_frozen", "o2o_detached"):
        assert [v[2] for v in accuracy.EVAL_VARIANTS[f"projects/DATE/configs/date_F_R50_o2m_fcos_form_{name}.py"]] == [
            o for _, _, o in date_f_o2m]
    # and that is the last one-branch control with the one-to-one branch back and evaluated
    assert_differs_only_in(previous.model, fcos_form, {"lambda_o2o": (0.0, 1.0), "test_branch": ("o2m", ABSENT)})
    iou_atss = load_config(paths["projects/HCRAL/configs/atss_iou_quality.py"])
    atss = load_config(paths["atss_R50_1x.py"])
    assert iou_atss.model.quality_target == "iou" and atss.model.quality_target == "centerness"
    # HCRAL-ATSS with GHM's β capped is HCRAL-ATSS with only that cap
    capped = load_config(paths["projects/HCRAL/configs/hcral_atss_beta_cap50.py"])
    hcral = load_config(accuracy.resolve_config("hcral_atss_R50_1x.py"))
    assert_differs_only_in(capped.model, hcral.model, {"hcrac.beta_cap": (50.0, None)})
    # two chosen pairs with one baseline: one run, one row
    with_ablations = accuracy.select_configs(["retinanet_controls", "mal_ablations"], None, log=pytest.fail)
    assert [name for _, _, name, _ in with_ablations].count("retinanet_R50.py") == 1 and len(with_ablations) == 5


@pytest.mark.parametrize("frozen_path, base_path, o2m_own_scales", [
    # the scales both branches share, frozen
    ("projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_frozen_scales.py",
     "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers.py", False),
    # only the one-to-one scales frozen; the one-to-many predictor's own scales learn
    ("projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales_o2o_frozen.py",
     "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales.py", True),
])
def test_frozen_scales_controls_hold_the_one_to_one_scales_at_one_and_train_the_rest(
        frozen_path, base_path, o2m_own_scales):
    # Each control is its base with one optimizer override more; the model is the same.
    assert frozen_path in {name: configs for name, _, configs in accuracy.CONTROL_PAIRS}["fcos_controls"]
    frozen, base = load_config(accuracy.resolve_config(frozen_path)), load_config(accuracy.resolve_config(base_path))
    assert_differs_only_in(frozen.model, base.model, {})
    assert_differs_only_in(frozen.optimizer, base.optimizer, {
        "params.overrides": ({"scales": {"lr": 0.0, "weight_decay": 0.0}}, ABSENT)})
    # One AdamW step under the preset, as the trainer builds it, with a gradient on every parameter:
    # the one-to-one scales (`head.scales`, shared or not) stay exactly 1 and every other parameter
    # moves, the one-to-many predictor's own scales included; without the override they all move.
    moved = {}
    for path in (frozen_path, base_path):
        cfg = preset_applied(accuracy.resolve_config(path), get_preset("cpu_long"))
        torch.manual_seed(0)
        model = instantiate(cfg.model)
        optimizer = Trainer.build_optimizer(cfg, model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.01)
        optimizer.step()
        moved[path] = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert "head.scales" in before and ("head.o2m_scales" in before) == o2m_own_scales
        if path == frozen_path:  # held at its initial 1, not only unmoved
            assert torch.equal(model.head.scales.detach(), torch.ones_like(model.head.scales))
    everything = set(before)
    assert moved[frozen_path] == everything - {"head.scales"}
    assert moved[base_path] == everything


@pytest.mark.parametrize("control, base", [
    ("projects/DATE/configs/date_F_R50_o2m_only_center_sampling_clip10.py",
     "projects/DATE/configs/date_F_R50_o2m_only_center_sampling.py"),
    ("projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_clip10.py",
     "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou.py"),
    ("projects/DATE/configs/date_F_R50_clip10.py", "date_F_R50_1x.py"),
])
def test_date_clip_controls_change_only_the_clip_and_the_preset_keeps_it(control, base):
    # DATE's whole-model clip loosened from 0.1 to the presets' 10; the preset fills in a clip only
    # for configs that set none, so the control trains at 10 and its base at 0.1.
    assert control in {name: configs for name, _, configs in accuracy.CONTROL_PAIRS}["fcos_controls"]
    cfg, base_cfg = load_config(accuracy.resolve_config(control)), load_config(accuracy.resolve_config(base))
    assert_differs_only_in(cfg.model, base_cfg.model, {})
    assert cfg.train.output_dir != base_cfg.train.output_dir
    assert_differs_only_in(cfg.train, base_cfg.train, {
        "clip_grad.clip_value": (10.0, 0.1), "output_dir": (cfg.train.output_dir, base_cfg.train.output_dir)})
    for path, clip in ((control, 10.0), (base, 0.1)):
        assert preset_applied(accuracy.resolve_config(path), get_preset("cpu_long")).train.clip_grad.clip_value == clip


def test_mal_ablations_switch_off_one_part_each_beside_retinanet():
    rows = accuracy.select_configs(["mal_ablations"], None, log=pytest.fail)
    assert {baseline for _, baseline, _, _ in rows} == {"retinanet_R50.py"}
    parts = {name: load_config(path).model for _, _, name, path in rows[1:]}
    assert {(m.selection, m.depression_schedule) for m in parts.values()} == {
        ("all", "off"), ("schedule", "off"), ("all", "symmetric_step")}
    full = load_config(accuracy.resolve_config("mal_R50.py")).model
    assert (full.selection, full.depression_schedule) == ("schedule", "symmetric_step")


def test_hcral_ablations_keep_one_part_each():
    retina = {name: load_config(path).model for _, _, name, path in
              accuracy.select_configs(["hcral_retinanet_ablations"], None, log=pytest.fail)[1:]}
    assert {(m.use_hcrac, m.use_hcrar) for m in retina.values()} == {(True, False), (False, True)}
    rows = accuracy.select_configs(["hcral_atss_ablations"], None, log=pytest.fail)
    assert {baseline for _, baseline, _, _ in rows} == {"atss_R50_1x.py"}
    atss = {name: load_config(path).model for _, _, name, path in rows[1:]}
    assert {(m.use_eatss, m.use_hcrac, m.use_hcrar) for m in atss.values()} == {
        (False, True, False), (False, False, True), (True, False, False)}
    # every part ablation keeps HCRAL's IoU target, so the IoU-quality control is their common base
    assert {m.quality_target for m in atss.values()} == {"iou"}
    assert all(name in accuracy.LABELS for name in list(retina) + list(atss))
    # each HCRA-C diagnostic is HCRA-C only with its switches set (diagnostic value, HCRA-C's value),
    # and nothing else
    hcrac_only = atss["projects/HCRAL/configs/atss_hcrac_only.py"]
    diagnostics = {
        "atss_hcrac_no_rci.py": {"hcrac.use_rci": (False, True)},
        "atss_ghmc.py": {"hcrac.use_rci": (False, True), "hcrac.use_iou_conditioning": (False, True)},
        "atss_hcrac_beta_cap50.py": {"hcrac.beta_cap": (50.0, None)},
    }
    for name, switches in diagnostics.items():
        assert_differs_only_in(atss[f"projects/HCRAL/configs/{name}"], hcrac_only, switches)


def test_alwa_control_is_a_constant_weight_beside_retinanet():
    rows = accuracy.select_configs(["alwa_controls"], None, log=pytest.fail)
    controls = ("projects/ALWA/configs/retinanet_fixed_cls_weight.py",
                "projects/ALWA/configs/retinanet_fixed_cls_weight_044.py")
    assert [(baseline, name) for _, baseline, name, _ in rows] == [
        ("retinanet_R50.py", "retinanet_R50.py")] + [("retinanet_R50.py", c) for c in controls]
    weights = []
    for _, _, name, path in rows[1:]:
        alwa = load_config(path).model.alwa
        assert alwa.adapt is False
        assert f"× {alwa.alpha_init}" in accuracy.LABELS[name]  # the label names the weight the config sets
        weights.append(alwa.alpha_init)
    assert weights == [0.58, 0.44]  # the α ALWA settled at on cards, on chess


def test_conf_eval_variant_ranks_by_the_class_score_alone():
    # Conf's fusion exponent is an inference setting (its training never reads it), so evaluating
    # the trained model again with a = 0 is RetinaNet's ranking on the same weights.
    ((tag, label, overrides),) = accuracy.EVAL_VARIANTS["retinanet_conf_R50.py"]
    assert overrides == ("model.fusion_alpha=0.0",) and "a = 0" in label
    assert load_config(accuracy.resolve_config("retinanet_conf_R50.py")).model.fusion_alpha > 0


def test_an_eval_variant_evaluates_the_final_model_again_once(tmp_path):
    run_dir = str(tmp_path)
    (tmp_path / "model_final.pth").write_bytes(b"x")
    calls = []

    def runner(cmd, log_path):
        calls.append(cmd)
        eval_dir = os.path.join(run_dir, "eval_nms")
        with open(os.path.join(eval_dir, "metrics.json"), "a") as f:
            f.write(json.dumps({"iteration": 9, "bbox/AP": 4.0, "bbox/AP50": 5.0, "bbox/AP75": 3.0}) + "\n")
        return 0

    kw = dict(tag="nms", log=lambda *_: None)
    result = accuracy.evaluate_again(run_dir, "cfg.py", ["model.test_nms_thresh=0.6"], runner=runner, **kw)
    cmd = calls[0]
    assert "--eval-only" in cmd and cmd[-1] == "model.test_nms_thresh=0.6"
    assert f"train.init_checkpoint={os.path.join(run_dir, 'model_final.pth')}" in cmd
    assert result["metrics"] == {"bbox/AP": 4.0, "bbox/AP50": 5.0, "bbox/AP75": 3.0}
    again = accuracy.evaluate_again(run_dir, "cfg.py", ["x=1"], runner=lambda *a: pytest.fail("evaluated twice"), **kw)
    assert again == result
    missing = accuracy.evaluate_again(str(tmp_path / "none"), "cfg.py", [], runner=pytest.fail, **kw)
    assert missing["failed"]


def test_cpu_long_preset_has_late_lr_drops_and_a_preset_sets_autocast():
    preset = get_preset("cpu_long")
    assert preset.max_iter <= 3000 and preset.steps == (round(0.85 * preset.max_iter), round(0.95 * preset.max_iter))
    assert preset.eval_period * 10 == preset.max_iter
    cfg = preset_applied(os.path.join(REPO, "configs", "fcos_R50.py"), "cpu_long")
    assert not cfg.train.amp.enabled  # fp32: bf16 is slower on a CPU without native bf16 (presets.py)
    bf16 = dataclasses.replace(preset, amp_dtype="bfloat16")
    cfg = preset_applied(os.path.join(REPO, "configs", "fcos_R50.py"), bf16)
    assert cfg.train.amp.enabled and cfg.train.amp.dtype == "bfloat16"
    assert shared_settings(cfg)["depth"] == 18 and cfg.dataloader.test.mapper.augmentations[0].short_edge_length == 256


def test_a_run_that_stops_early_is_reported_failed(tmp_path):
    result = accuracy.run_one(str(tmp_path), "cfg.py", runner=lambda cmd, log: 1, max_iter=3, num_gpus=1,
                              keep_checkpoints=False, log=lambda *_: None)
    assert result["failed"] and not (tmp_path / "result.json").exists()


# ------------------------------------------------------------------------------------ end to end
def test_register_file_reaches_every_training_process(tmp_path):
    """A dataset registered only by --register trains under --num-gpus 2 (two spawned workers, both
    building the train loader) and is evaluated. The run trains MAL: it is also MAL's two-process
    test (two iterations, so that DDP's check for parameters without a gradient, done at the next
    forward, runs), and the session's only one."""
    DatasetCatalog.get(SYNTH_MINI)  # writes the synthetic files once
    meta = MetadataCatalog.get(SYNTH_MINI)
    register = tmp_path / "my_datasets.py"
    register.write_text(
        "from alignment_det.data import register_coco_json\n"
        f"register_coco_json('acc_user_shapes', {meta.json_file!r}, {meta.image_root!r})\n"
    )
    out = tmp_path / "out"
    report = accuracy.main([
        "--preset", "instant", "--max-iter", "2", "--configs", "mal_R50.py", "--seeds", "0",
        "--register", str(register), "--train-dataset", "acc_user_shapes", "--test-dataset", "acc_user_shapes",
        "--num-gpus", "2", "--output", str(out),
    ])
    run_dir = out / "runs" / "mal_R50" / "seed0"
    run = report["configs"]["mal_R50.py"]["runs"][0]
    assert not run.get("failed"), (run_dir / "train.log").read_text()[-3000:]
    assert run["evaluated_at"] == 2 and "bbox/AP" in run["metrics"]
    log = (run_dir / "log.txt").read_text()
    assert "World size: 2" in log
    assert (run_dir / "model_final.pth").is_file() and "loss_mal_pos" in (run_dir / "train.log").read_text()


def test_end_to_end_table_curves_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    argv = ["--preset", "instant", "--max-iter", "3", "--configs", "retinanet_R50.py", "retinanet_conf_R50.py",
            "--seeds", "0", "--train-dataset", SYNTH_TRAIN, "--test-dataset", SYNTH_MINI, "--output", str(out)]
    # In this process (the register test above covers the subprocess runner).
    report = accuracy.main(argv, runner=accuracy_runner_in_process)
    table = (out / "results.md").read_text()
    assert "| RetinaNet | `retinanet_R50.py` | SGD 0.01, clip 10 | 1 |" in table
    assert "| RetinaNet-Conf | `retinanet_conf_R50.py` |" in table
    assert "instant@3" in table and "synthetic_shapes_train" in table
    assert set(report["configs"]) == {"retinanet_R50.py", "retinanet_conf_R50.py", "retinanet_conf_R50.py [cls_only]"}
    # RetinaNet-Conf's class-score-only row is its trained model evaluated again, not a training run
    (again,) = report["configs"]["retinanet_conf_R50.py [cls_only]"]["runs"]
    assert again["overrides"] == ["model.fusion_alpha=0.0"] and "bbox/AP" in again["metrics"]
    runs = [report["configs"][name]["runs"][0] for name in ("retinanet_R50.py", "retinanet_conf_R50.py")]
    for run in runs:
        assert not run.get("failed") and run["evaluated_at"] == 3 and run["wall_s"] > 0
        assert [x for x, _ in run["loss_curve"]] == [3]  # logged every 5 iterations and at the last
    assert json.loads((out / "results.json").read_text())["num_classes"] == 3
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # The checkpoints of a finished run are dropped but model_final.pth, for re-evaluation.
    files = os.listdir(out / "runs" / "retinanet_R50" / "seed0")
    assert "model_final.pth" in files and not [f for f in files if f.startswith("model_0")]
    assert "OMP_NUM_THREADS=1" in table
    # Run again (from a process with other threads): nothing is trained, the same table comes out.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    accuracy.main(argv, runner=lambda *a: pytest.fail("trained a finished run"))
    assert (out / "results.md").read_text() == table
    # --no-train rebuilds the report from run folders that hold only their results (the run config
    # and its settings are written again).
    for run_dir in (out / "runs").glob("*/seed0"):
        (run_dir / "settings.json").unlink()
        (run_dir / "config.py").unlink()
    accuracy.main(argv + ["--no-train"], runner=lambda *a: pytest.fail("trained with --no-train"))
    assert (out / "results.md").read_text() == table
    # --no-train over seeds of which some were never trained: those are "not run", not failed (the
    # exit status stays 0), and no folder is made for them.
    seeds_at = argv.index("--seeds")
    partial = argv[:seeds_at + 1] + ["0", "1"] + argv[seeds_at + 2:] + ["--no-train"]
    report = accuracy.main(partial, runner=lambda *a: pytest.fail("trained with --no-train"))
    retina = report["configs"]["retinanet_R50.py"]["aggregate"]
    assert (retina["seeds"], retina["failed"], retina["not_run"]) == (1, 0, 1)
    assert not (out / "runs" / "retinanet_R50" / "seed1").exists()
    assert "| SGD 0.01, clip 10 | 1 (+1 not run) |" in (out / "results.md").read_text()
    assert "unrecorded" not in (out / "results.md").read_text()  # only finished runs name their threads
