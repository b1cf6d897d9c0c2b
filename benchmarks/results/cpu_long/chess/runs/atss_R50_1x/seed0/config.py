"""The config of one run of ``benchmarks/accuracy.py``: the same file for every run.

``accuracy.py`` copies this file into each run folder as ``config.py``, beside the run's
``settings.json`` (config file, preset, max_iter, datasets, class count, seed, run folder,
register files, overrides, alignment evaluator on or off); the two are the complete record of
the run. Loading it registers the datasets of the register files (so every training process,
``--num-gpus`` workers included, has them), loads the zoo config, applies the preset
(:mod:`alignment_det.config.presets`) and the overrides. Re-run or resume a run with

    python train_net.py --config-file OUTPUT/runs/<config>/seed<k>/config.py --resume
"""
import json
import os

from detectron2.config import LazyCall as L

from alignment_det.config import apply_overrides, load_config
from alignment_det.config.presets import apply_preset, get_preset
from alignment_det.data import run_registration_files
from alignment_det.evaluation import AlignmentEvaluator

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "settings.json")) as _f:
    _settings = json.load(_f)

# The user's datasets, registered in every process that loads this config (training workers too).
run_registration_files(_settings["register"])

_cfg = load_config(_settings["config_file"])
apply_preset(
    _cfg,
    get_preset(_settings["preset"], max_iter=_settings["max_iter"]),
    train_dataset=_settings["train_dataset"],
    test_dataset=_settings["test_dataset"],
    num_classes=_settings["num_classes"],
    seed=_settings["seed"],
    output_dir=_settings["run_dir"],
    evaluator_output_dir=_settings["run_dir"],
)
if _settings["alignment_evaluator"]:
    # COCO AP and the alignment measures in one pass over the test set.
    _cfg.dataloader.evaluator.dataset_name = _settings["test_dataset"]  # literal: the node moves into a list
    _cfg.dataloader.evaluator = [
        _cfg.dataloader.evaluator,
        L(AlignmentEvaluator)(dataset_name=_settings["test_dataset"], output_dir=_settings["run_dir"]),
    ]
_cfg = apply_overrides(_cfg, _settings["overrides"])

model, dataloader, optimizer, train, lr_multiplier = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.train, _cfg.lr_multiplier
)
