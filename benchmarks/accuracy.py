#!/usr/bin/env python
"""Accuracy of each method beside its baseline, with one budget: train, evaluate, tabulate, plot.

    # every default pair, 2 seeds, on the cards set, 2 CPU cores (about an hour: one process per
    # seed side by side, then one that finds every run finished and writes the report)
    python benchmarks/accuracy.py --preset cpu --seeds 0 --output output/accuracy_cpu &
    python benchmarks/accuracy.py --preset cpu --seeds 1 --output output/accuracy_cpu; wait
    python benchmarks/accuracy.py --preset cpu --seeds 0 1 --output output/accuracy_cpu --no-train
    # one pair at a reduced budget
    python benchmarks/accuracy.py --preset cpu --pairs fcos --seeds 0 --max-iter 200 --output output/acc_fcos
    # your own datasets (COCO json or Pascal VOC), registered by a file of yours
    python benchmarks/accuracy.py --preset gpu --register my_datasets.py \\
        --train-dataset mine_train --test-dataset mine_val --output output/accuracy_mine

Each (config, seed) is trained by ``train_net.py`` in a subprocess in its run folder,
``OUTPUT/runs/<config>/seed<k>/``: ``settings.json`` holds the run's settings (zoo config, preset,
datasets, seed, ``--register`` files, ``--opts``, alignment evaluator on or off) and ``config.py`` is
a copy of ``benchmarks/accuracy_run_config.py``, the same file for every run, which reads them: it
registers the datasets of ``--register`` (so every training process, ``--num-gpus`` workers
included, has them), loads the zoo config, applies the preset (:mod:`alignment_det.config.presets`:
same backbone, input size, batch, schedule and seed for every method; each keeps its optimizer
family) and any ``--opts``. The two files are the complete record of the run. The run evaluates
every ``eval_period`` iterations and at the end.

Resuming: a run whose ``result.json`` exists is not trained again; an interrupted one resumes from
its last checkpoint (``train_net.py --resume``). Changing the settings of an existing run folder is
an error (use another ``--output``).

Writes to OUTPUT (``benchmarks/accuracy_report.py``): ``results.md`` (AP, AP50, AP75 as mean ±
sample std over seeds, the difference to the pair's baseline, the alignment measures of
``alignment_det.evaluation.AlignmentEvaluator``, time per iteration, training time per run (from it), and the
plateau check of each baseline: AP before the first lr drop against AP a quarter of the schedule
earlier), ``results.json`` (every number, per run and aggregated), ``curves.png`` (total loss and AP
over iterations, all runs overlaid) and ``pairs.png`` (AP over iterations, one panel per baseline).
"""
import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from alignment_det.config import resolve_config_file
from alignment_det.config.presets import PRESETS, get_preset
from alignment_det.data import check_datasets, run_registration_files  # also registers the built-in datasets
from alignment_det.data.register import dataset_thing_classes
from alignment_det.utils.metrics_file import read_metrics

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accuracy_report import (  # noqa: E402  beside this file
    ALIGNMENT_PREFIX, COCO_KEYS, aggregate, finished, optimizer_description, summarize_run, write_report,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accuracy_run_config.py")

# (name for --pairs, baseline, methods). A pair whose configs are missing is skipped with a note.
DEFAULT_PAIRS = (
    ("retinanet", "retinanet_R50.py", ("mal_R50.py", "retinanet_conf_R50.py", "retinanet_alwa_R50.py")),
    ("fcos", "fcos_R50.py", ("date_F_R50_1x.py", "date_R_R50_1x.py")),
    ("atss", "atss_R50_1x.py", ("hcral_atss_R50_1x.py",)),
)
# Controls that test each paper's own claim (run them with --pairs NAME; the baseline runs are
# shared with the default pairs): HCRAL's ablation base on RetinaNet; DATE without its one-to-many
# branch (the OneNet/POTO detector DATE's faster convergence is measured against), DATE with only
# its one-to-many branch (with and without FCOS's centre sampling) and FCOS with DATE's optimizer;
# ATSS with HCRAL's IoU quality target. MAL's ablations split its gap to RetinaNet between its
# parts: the bag likelihood alone (FreeAnchor's), + selection, + depression.
# HCRAL's ablations take one part at a time: each HCRA loss alone on RetinaNet (the paper's Tables
# 1-4 base), and HCRA-C, HCRA-R or EATSS alone on ATSS with HCRAL's IoU quality target (compare them
# with the "ATSS, IoU quality target" control, which has none of the three); HCRA-C without its RCI
# factor tells whether holding positives' scores at their IoU is what HCRA-C costs, and GHM-C (HCRA-C
# without RCI and IoU conditioning) whether its GHM harmoniser is; HCRA-C with GHM's β capped at 50
# whether the harmoniser's huge β on nearly empty bins is, and HCRAL-ATSS with that cap (an ATSS
# control) what the whole method scores with it. RetinaNet with a constant classification weight
# (the α ALWA settled at: 0.58 on cards, 0.44 on chess) tells ALWA's adaptation from the lower weight
# it settles at.
CONTROL_PAIRS = (
    ("retinanet_controls", "retinanet_R50.py", ("hcral_retinanet_R50_1x.py",)),
    ("fcos_controls", "fcos_R50.py",
     ("projects/DATE/configs/date_F_R50_o2o_only.py", "projects/DATE/configs/date_F_R50_o2m_only.py",
      "projects/DATE/configs/date_F_R50_o2m_only_center_sampling.py",
      "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_clip10.py",
      "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou.py",
      "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_clip10.py",
      "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_normbbox.py",
      "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_normbbox_ctr_on_reg.py",
      "projects/DATE/configs/date_F_R50_o2m_fcos_form.py",
      "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers.py",
      "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales.py",
      "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_frozen_scales.py",
      "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales_o2o_frozen.py",
      "projects/DATE/configs/date_F_R50_o2m_fcos_form_o2o_detached.py",
      "projects/DATE/configs/date_F_R50_clip10.py",
      "projects/DATE/configs/fcos_R50_date_optimizer.py")),
    ("atss_controls", "atss_R50_1x.py",
     ("projects/HCRAL/configs/atss_iou_quality.py", "projects/HCRAL/configs/hcral_atss_beta_cap50.py")),
    ("mal_ablations", "retinanet_R50.py", tuple(
        f"projects/MAL/configs/mal_R50_{part}.py" for part in ("selection_all", "selection_only", "depression_only"))),
    ("hcral_retinanet_ablations", "retinanet_R50.py", tuple(
        f"projects/HCRAL/configs/retinanet_{part}_only.py" for part in ("hcrac", "hcrar"))),
    ("hcral_atss_ablations", "atss_R50_1x.py", tuple(
        f"projects/HCRAL/configs/atss_{part}.py"
        for part in ("hcrac_only", "hcrar_only", "eatss_only", "hcrac_no_rci", "ghmc", "hcrac_beta_cap50"))),
    ("alwa_controls", "retinanet_R50.py", tuple(
        f"projects/ALWA/configs/retinanet_fixed_cls_weight{suffix}.py" for suffix in ("", "_044"))),
)
# Rows that evaluate another row's trained model again with overrides, without training:
# config -> ((folder tag, label, overrides), ...). DATE with NMS at inference (paper Table 6: within
# 0.1 AP of DATE without it), and DATE's training-only one-to-many branch decoded with NMS (a
# diagnostic: weak shared features make both branches weak, a weak one-to-one predictor only one).
# RetinaNet-Conf ranked by its class score alone (fusion exponent 0; its training does not use the
# exponent): what the fused score adds at inference, apart from training with the extra branch.
EVAL_VARIANTS = {
    "date_F_R50_1x.py": (
        ("nms", "DATE-F, evaluated with NMS 0.6", ("model.test_nms_thresh=0.6",)),
        ("o2m", "DATE-F, its one-to-many branch evaluated (with NMS)", ("model.test_branch=o2m",)),
    ),
    "date_R_R50_1x.py": (
        ("o2m", "DATE-R, its one-to-many branch evaluated (with NMS)", ("model.test_branch=o2m",)),
    ),
    "projects/DATE/configs/date_F_R50_o2m_fcos_form.py": (
        ("o2m", "DATE-F, FCOS-form one-to-many branch, that branch evaluated (with NMS)", ("model.test_branch=o2m",)),
    ),
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers.py": (
        ("o2m", "DATE-F, FCOS-form one-to-many branch, separate towers, that branch evaluated (with NMS)",
         ("model.test_branch=o2m",)),
    ),
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales.py": (
        ("o2m", "DATE-F, FCOS-form one-to-many branch, separate towers and scales, that branch evaluated (with NMS)",
         ("model.test_branch=o2m",)),
    ),
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_frozen_scales.py": (
        ("o2m", "DATE-F, FCOS-form one-to-many branch, separate towers, shared scales frozen at 1, that branch evaluated"
         " (with NMS)", ("model.test_branch=o2m",)),
    ),
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales_o2o_frozen.py": (
        ("o2m", "DATE-F, FCOS-form one-to-many branch, separate towers and scales, one-to-one scales frozen at 1,"
         " that branch evaluated (with NMS)", ("model.test_branch=o2m",)),
    ),
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_o2o_detached.py": (
        ("o2m", "DATE-F, FCOS-form one-to-many branch, one-to-one loss stopped at the head, that branch evaluated"
         " (with NMS)", ("model.test_branch=o2m",)),
    ),
    "retinanet_conf_R50.py": (
        ("cls_only", "RetinaNet-Conf, ranked by the class score alone (fusion a = 0)", ("model.fusion_alpha=0.0",)),
    ),
}
LABELS = {
    "retinanet_R50.py": "RetinaNet",
    "mal_R50.py": "MAL",
    "retinanet_conf_R50.py": "RetinaNet-Conf",
    "retinanet_alwa_R50.py": "RetinaNet + ALWA",
    "fcos_R50.py": "FCOS",
    "date_F_R50_1x.py": "DATE-F",
    "date_R_R50_1x.py": "DATE-R",
    "atss_R50_1x.py": "ATSS",
    "hcral_atss_R50_1x.py": "HCRAL-ATSS",
    "hcral_retinanet_R50_1x.py": "HCRAL-RetinaNet",
    "projects/DATE/configs/date_F_R50_o2o_only.py": "DATE-F, one-to-one only",
    "projects/DATE/configs/date_F_R50_o2m_only.py": "DATE-F, one-to-many only (evaluated with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_only_center_sampling.py": "DATE-F, one-to-many only, centre sampling (with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_clip10.py":
        "DATE-F, one-to-many only, centre sampling, gradient clip 10 (with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou.py":
        "DATE-F, one-to-many only, centre sampling, GIoU loss (with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_clip10.py":
        "DATE-F, one-to-many only, centre sampling, GIoU loss, gradient clip 10 (with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_normbbox.py":
        "DATE-F, one-to-many only, centre sampling, GIoU, sides in strides (with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_only_center_sampling_giou_normbbox_ctr_on_reg.py":
        "DATE-F, one-to-many only, centre sampling, GIoU, sides in strides, centerness on the box tower (with NMS)",
    "projects/DATE/configs/date_F_R50_o2m_fcos_form.py": "DATE-F, one-to-many branch in Detectron2 FCOS's form",
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers.py":
        "DATE-F, one-to-many branch in Detectron2 FCOS's form, separate towers",
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales.py":
        "DATE-F, one-to-many branch in Detectron2 FCOS's form, separate towers and scales",
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_frozen_scales.py":
        "DATE-F, one-to-many branch in Detectron2 FCOS's form, separate towers, shared scales frozen at 1",
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_separate_towers_scales_o2o_frozen.py":
        "DATE-F, one-to-many branch in Detectron2 FCOS's form, separate towers and scales, one-to-one scales frozen at 1",
    "projects/DATE/configs/date_F_R50_o2m_fcos_form_o2o_detached.py":
        "DATE-F, one-to-many branch in Detectron2 FCOS's form, one-to-one loss stopped at the head",
    "projects/DATE/configs/date_F_R50_clip10.py": "DATE-F, gradient clip 10",
    "projects/DATE/configs/fcos_R50_date_optimizer.py": "FCOS, DATE's optimizer",
    "projects/HCRAL/configs/atss_iou_quality.py": "ATSS, IoU quality target",
    "projects/MAL/configs/mal_R50_selection_all.py": "MAL, bag loss only (no selection, no depression)",
    "projects/MAL/configs/mal_R50_selection_only.py": "MAL without depression",
    "projects/MAL/configs/mal_R50_depression_only.py": "MAL without selection schedule",
    "projects/HCRAL/configs/retinanet_hcrac_only.py": "RetinaNet + HCRA-C only",
    "projects/HCRAL/configs/retinanet_hcrar_only.py": "RetinaNet + HCRA-R only",
    "projects/HCRAL/configs/atss_hcrac_only.py": "ATSS (IoU quality) + HCRA-C only",
    "projects/HCRAL/configs/atss_hcrar_only.py": "ATSS (IoU quality) + HCRA-R only",
    "projects/HCRAL/configs/atss_eatss_only.py": "ATSS (IoU quality) + EATSS only",
    "projects/HCRAL/configs/atss_hcrac_no_rci.py": "ATSS (IoU quality) + HCRA-C only, no RCI",
    "projects/HCRAL/configs/atss_ghmc.py": "ATSS (IoU quality) + GHM-C only",
    "projects/HCRAL/configs/atss_hcrac_beta_cap50.py": "ATSS (IoU quality) + HCRA-C only, GHM β ≤ 50",
    "projects/HCRAL/configs/hcral_atss_beta_cap50.py": "HCRAL-ATSS, GHM β ≤ 50",
    "projects/ALWA/configs/retinanet_fixed_cls_weight.py": "RetinaNet, classification loss × 0.58 (no ALWA)",
    "projects/ALWA/configs/retinanet_fixed_cls_weight_044.py": "RetinaNet, classification loss × 0.44 (no ALWA)",
}


# ------------------------------------------------------------------------------------ datasets
def dataset_classes(name: str) -> List[str]:
    """``thing_classes`` of a registered dataset (:func:`alignment_det.data.register.dataset_thing_classes`),
    with what to do when it is not registered or names none."""
    try:
        check_datasets(name)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} Here: pass --register FILE.py, a file that registers it.") from None
    classes = dataset_thing_classes(name)
    if not classes:
        raise ValueError(f"Dataset {name!r} has no thing_classes in its metadata; register it with "
                         "alignment_det.data.register_coco_json or register_voc.")
    return list(classes)


def dataset_num_classes(train_dataset: str, test_dataset: str) -> int:
    """The class count of the training set, checked against the test set's classes."""
    train, test = dataset_classes(train_dataset), dataset_classes(test_dataset)
    if train != test:
        raise ValueError(f"{train_dataset} and {test_dataset} have different classes ({train} vs {test}); "
                         "a model trained on one cannot be evaluated on the other.")
    return len(train)


# ------------------------------------------------------------------------------------ configs
def resolve_config(name: str) -> Optional[str]:
    """Absolute path of a config file or zoo name; None when it does not exist."""
    for candidate in (name, os.path.join(REPO, name)):  # a project config, from any folder
        try:
            return os.path.abspath(resolve_config_file(candidate))
        except FileNotFoundError:
            continue
    return None


def config_key(name: str, path: str) -> str:
    """The name a config has in the pairs, labels and tables, however ``--configs`` spelled it: a
    zoo config's file name (``configs/fcos_R50.py`` is ``fcos_R50.py``), another file of this
    checkout by its path from the checkout root, any other file as typed."""
    if resolve_config(os.path.basename(name)) == path:
        return os.path.basename(name)
    relative = os.path.relpath(path, REPO)
    return name if relative.startswith(os.pardir) else relative


def select_configs(pair_names: Optional[Sequence[str]], configs: Optional[Sequence[str]], log=print):
    """[(pair name or None, baseline config or None, config name, path)] in table order."""
    if configs:
        # A config of a known pair keeps that pair (and its baseline, when the baseline is chosen
        # too): ΔAP and the plateau check of baselines work for runs chosen one by one.
        role = {}
        for name, baseline, methods in DEFAULT_PAIRS + CONTROL_PAIRS:
            for c in (baseline, *methods):
                role.setdefault(c, (name, baseline))
        chosen = []
        for c in configs:
            path = resolve_config(c)
            if path is None:
                raise FileNotFoundError(f"--configs {c}: neither a file nor a zoo config")
            chosen.append((config_key(c, path), path))
        keys = [key for key, _ in chosen]
        out = []
        for key, path in chosen:
            pair, baseline = role.get(key, (None, None))
            out.append((pair, baseline if baseline in keys else None, key, path))
        return out
    known = {p[0] for p in DEFAULT_PAIRS + CONTROL_PAIRS}
    wanted = [p.lower() for p in pair_names] if pair_names else [p[0] for p in DEFAULT_PAIRS]
    unknown = set(wanted) - known
    if unknown:
        raise ValueError(f"Unknown --pairs {sorted(unknown)}; known: {sorted(known)}")
    out = []
    for name, baseline, methods in DEFAULT_PAIRS + CONTROL_PAIRS:
        if name not in wanted:
            continue
        paths = {c: resolve_config(c) for c in (baseline, *methods)}
        missing = [c for c, p in paths.items() if p is None]
        if missing:
            log(f"note: pair {name!r} skipped: {', '.join(missing)} not in this checkout")
            continue
        # a baseline shared by two chosen pairs is one run and one row
        listed = {row[2] for row in out}
        out += [(name, baseline, c, paths[c]) for c in (baseline, *methods) if c not in listed]
    if not out:
        raise ValueError("No config to run.")
    return out


def run_settings(
    *, config_file: str, preset: str, max_iter: Optional[int], train_dataset: str, test_dataset: str,
    num_classes: int, seed: int, run_dir: str, register: Sequence[str], overrides: Sequence[str],
    alignment_evaluator: bool = True,
) -> dict:
    """The ``settings.json`` of one run, which ``accuracy_run_config.py`` reads (see the module docstring)."""
    return dict(
        config_file=config_file, preset=preset, max_iter=max_iter, train_dataset=train_dataset,
        test_dataset=test_dataset, num_classes=num_classes, seed=seed, run_dir=run_dir,
        register=[os.path.abspath(r) for r in register], overrides=list(overrides),
        alignment_evaluator=alignment_evaluator,
    )


# Settings that say where a run is, not what it is: a run folder copied elsewhere (the committed
# results under benchmarks/results/, another checkout) is the same run.
LOCATION_KEYS = ("config_file", "run_dir")


def _config_name(path: str) -> str:
    """A config file's path from its ``configs/`` or ``projects/`` folder on (the same config in
    another checkout has the same name)."""
    parts = os.path.normpath(path).split(os.sep)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("configs", "projects"):
            return "/".join(parts[i:])
    return path


def same_run(a: dict, b: dict) -> bool:
    """Whether two ``settings.json`` describe the same run, wherever its folder and checkout are."""
    def what(s):
        return dict({k: v for k, v in s.items() if k not in LOCATION_KEYS}, config=_config_name(s.get("config_file", "")))

    return what(a) == what(b)


def prepare_run_dir(run_dir: str, settings: dict) -> str:
    """Write ``settings.json`` into ``run_dir`` (the same run again is a no-op, and a moved run folder
    gets its new location; other settings are an error) and the run config beside it; returns the
    config's path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "settings.json")
    if os.path.isfile(path):
        with open(path) as f:
            if not same_run(json.load(f), settings):
                raise RuntimeError(
                    f"{path} holds other settings (preset, datasets, overrides, register files or "
                    "evaluators changed). Use another --output, or delete that run folder to train it again."
                )
    with open(path, "w") as f:  # the run config reads run_dir and config_file from here
        json.dump(settings, f, indent=1)
    config_path = os.path.join(run_dir, "config.py")
    shutil.copyfile(RUN_CONFIG, config_path)
    return config_path


# ------------------------------------------------------------------------------------ runs
def train_net_command(config_path: str, num_gpus: int) -> List[str]:
    # --resume: continue from the run folder's last checkpoint, or start when there is none.
    return [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config_path, "--resume",
            "--num-gpus", str(num_gpus)]


def run_subprocess(cmd: Sequence[str], log_path: str) -> int:
    """Run ``cmd`` with this checkout first on PYTHONPATH, appending its output to ``log_path``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "a") as log:
        return subprocess.run(list(cmd), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def evaluate_again(run_dir: str, config_path: str, overrides: Sequence[str], *, tag: str,
                   runner: Callable[[Sequence[str], str], int], train: bool = True, log=print) -> dict:
    """Evaluate a finished run's ``model_final.pth`` again with ``overrides`` (``--eval-only``) into
    ``run_dir/eval_<tag>``; returns a result like :func:`run_one`'s (metrics of that evaluation), read
    from its ``result.json`` when it exists. The evaluators keep writing their prediction dumps into
    ``run_dir`` (the run's settings name it); the run's own metrics are in its metrics.json."""
    eval_dir = os.path.join(run_dir, f"eval_{tag}")
    result_path = os.path.join(eval_dir, "result.json")
    if os.path.isfile(result_path):
        with open(result_path) as f:
            return json.load(f)
    checkpoint = os.path.join(run_dir, "model_final.pth")
    if not train:
        log(f"not evaluated (--no-train): {eval_dir}")
        return dict(not_run=True)
    if not os.path.isfile(checkpoint):
        log(f"not evaluated (no model_final.pth): {eval_dir}")
        return dict(failed=True, returncode=None)
    os.makedirs(eval_dir, exist_ok=True)
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config_path, "--eval-only",
           f"train.init_checkpoint={checkpoint}", f"train.output_dir={eval_dir}", *overrides]
    log(f"evaluating again ({' '.join(overrides)}): {eval_dir}")
    code = runner(cmd, os.path.join(eval_dir, "eval.log"))
    metrics_file = os.path.join(eval_dir, "metrics.json")
    series = read_metrics(metrics_file, finite_only=False) if os.path.isfile(metrics_file) else {}
    metrics = {k: values[-1] for k, (_, values) in series.items()
               if values and (k in COCO_KEYS or k.startswith(ALIGNMENT_PREFIX))}
    if code != 0 or COCO_KEYS[0] not in metrics:
        log(f"FAILED (exit {code}): {eval_dir}; see {os.path.join(eval_dir, 'eval.log')}")
        return dict(failed=True, returncode=code)
    result = dict(metrics=metrics, overrides=list(overrides), ap_curve=[], loss_curve=[])
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def remove_intermediate_checkpoints(run_dir: str) -> None:
    """Keep ``model_final.pth`` (for re-evaluation) and drop the periodic ones."""
    for f in os.listdir(run_dir):
        if f.startswith("model_") and f.endswith(".pth") and f != "model_final.pth":
            os.remove(os.path.join(run_dir, f))


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes of this one (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(run_dir: str, config_path: str, *, max_iter: int, num_gpus: int, keep_checkpoints: bool,
            runner: Callable[[Sequence[str], str], int], log=print) -> dict:
    """Train (or resume) one run unless its result.json exists; returns the result (``failed``
    is set when the run did not finish). ``--no-train`` never calls it for a run without a result."""
    result_path = os.path.join(run_dir, "result.json")
    if os.path.isfile(result_path):
        with open(result_path) as f:
            result = json.load(f)
        log(f"done already: {run_dir}")
        return result
    wall_path = os.path.join(run_dir, "wall_times.json")
    walls = []
    if os.path.isfile(wall_path):
        with open(wall_path) as f:
            walls = json.load(f)
    log(f"training: {run_dir}" + (f" (resuming; {len(walls)} earlier attempt(s))" if walls else ""))
    load_before = os.getloadavg()[0]
    t0, cpu0 = time.time(), _children_cpu_s()
    code = runner(train_net_command(config_path, num_gpus), os.path.join(run_dir, "train.log"))
    # CPU time of the training processes: on a shared machine it varies far less than wall time.
    walls.append(dict(wall_s=time.time() - t0, cpu_s=_children_cpu_s() - cpu0, returncode=code,
                      load_before=load_before, load_after=os.getloadavg()[0],
                      # what the training processes' torch used (they inherit this environment)
                      omp_num_threads=os.environ.get("OMP_NUM_THREADS", "default"),
                      finished=datetime.datetime.now().isoformat(timespec="seconds")))
    with open(wall_path, "w") as f:
        json.dump(walls, f, indent=1)
    metrics_file = os.path.join(run_dir, "metrics.json")
    summary = summarize_run(read_metrics(metrics_file, finite_only=False) if os.path.isfile(metrics_file) else {}, max_iter)
    if code != 0 or summary["evaluated_at"] != max_iter:
        log(f"FAILED (exit {code}): {run_dir}; see {os.path.join(run_dir, 'train.log')}")
        return dict(failed=True, returncode=code, wall_s=sum(w["wall_s"] for w in walls))
    result = dict(summary, wall_s=sum(w["wall_s"] for w in walls), cpu_s=sum(w.get("cpu_s", 0.0) for w in walls),
                  attempts=len(walls), load_avg=[w[k] for w in walls for k in ("load_before", "load_after") if k in w],
                  omp_num_threads=sorted({w.get("omp_num_threads", "unrecorded") for w in walls}))
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    if not keep_checkpoints:
        remove_intermediate_checkpoints(run_dir)
    return result


# ------------------------------------------------------------------------------------ main
def argument_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--max-iter", type=int, default=None,
                   help="another budget for every run; the preset's steps, warm-up and periods scale with it")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pairs", nargs="+", metavar="PAIR",
                       help=f"pairs to run (default: all of {[d[0] for d in DEFAULT_PAIRS]}; controls: "
                        f"{[d[0] for d in CONTROL_PAIRS]})")
    which.add_argument("--configs", nargs="+", metavar="CONFIG", help="configs (files or zoo names) instead of pairs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help=">= 2 seeds give mean and spread")
    p.add_argument("--dataset", choices=("cards", "chess"), default=None,
                   help="a built-in benchmark set: cards (sparse, ~2 boxes per image) or chess (dense, ~10); "
                        "sets --train-dataset NAME_train and --test-dataset NAME_test")
    p.add_argument("--train-dataset", default="cards_train")
    p.add_argument("--test-dataset", default="cards_test")
    p.add_argument("--register", nargs="+", default=[], metavar="FILE.py",
                   help="Python files that register your datasets (alignment_det.data.register_coco_json / register_voc)")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run (recorded)")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per run (train_net.py --num-gpus)")
    p.add_argument("--output", required=True, help="folder for the runs and the report")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the periodic checkpoints of finished runs")
    p.add_argument("--no-train", action="store_true", help="only tabulate and plot the runs that finished")
    return p


def main(argv=None, *, runner: Callable[[Sequence[str], str], int] = run_subprocess) -> dict:
    args = argument_parser().parse_args(argv)
    if args.dataset:
        args.train_dataset, args.test_dataset = f"{args.dataset}_train", f"{args.dataset}_test"
    preset = get_preset(args.preset, max_iter=args.max_iter)
    run_registration_files(args.register)
    num_classes = dataset_num_classes(args.train_dataset, args.test_dataset)
    selected = select_configs(args.pairs, args.configs)
    output = os.path.abspath(args.output)
    runs_root = os.path.join(output, "runs")
    print(f"{len(selected)} configs x {len(args.seeds)} seeds, preset {preset.name}: {preset.describe()}")

    per_config: Dict[str, dict] = {}
    for pair, baseline, name, path in selected:
        stem = os.path.splitext(os.path.basename(name))[0]
        runs, config_path = [], None
        for seed in args.seeds:
            run_dir = os.path.join(runs_root, stem, f"seed{seed}")
            settings = run_settings(
                config_file=path, preset=args.preset, max_iter=args.max_iter, train_dataset=args.train_dataset,
                test_dataset=args.test_dataset, num_classes=num_classes, seed=seed, run_dir=run_dir,
                register=args.register, overrides=args.opts,
            )
            if args.no_train and not os.path.isfile(os.path.join(run_dir, "result.json")):
                # a report over the seeds that exist: no folder for a run that was never trained
                print(f"not run (--no-train): {run_dir}")
                runs.append(dict(not_run=True, seed=seed, run_dir=run_dir))
                continue
            config_path = prepare_run_dir(run_dir, settings)
            result = run_one(run_dir, config_path, max_iter=preset.max_iter, num_gpus=args.num_gpus,
                             keep_checkpoints=args.keep_checkpoints, runner=runner)
            runs.append(dict(result, seed=seed, run_dir=run_dir))
        label = LABELS.get(name, stem)
        optimizer = optimizer_description(config_path) if config_path else "—"
        per_config[name] = dict(pair=pair, baseline=baseline, label=label, config=name, optimizer=optimizer,
                                runs=runs, aggregate=aggregate(runs))
        for tag, variant_label, overrides in EVAL_VARIANTS.get(name, ()):
            variant_runs = [
                dict(evaluate_again(r["run_dir"], os.path.join(r["run_dir"], "config.py"), overrides, tag=tag,
                                    runner=runner, train=not args.no_train),
                     seed=r["seed"], run_dir=r["run_dir"])
                for r in runs if finished(r)
            ]
            per_config[f"{name} [{tag}]"] = dict(
                pair=pair, baseline=baseline, label=variant_label, config=f"{name} {' '.join(overrides)}",
                optimizer=optimizer, runs=variant_runs, aggregate=aggregate(variant_runs),
            )
    return write_report(args, preset, num_classes, per_config, output)


if __name__ == "__main__":
    report = main()
    failed = sum(c["aggregate"]["failed"] for c in report["configs"].values())
    sys.exit(1 if failed else 0)
