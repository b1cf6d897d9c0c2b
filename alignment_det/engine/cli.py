"""What ``train_net.py`` runs: Detectron2's standard arguments over a LazyConfig."""
import logging
import os

from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils import comm
from detectron2.utils.events import EventStorage, JSONWriter, TensorboardXWriter

from ..checkpoint import CheckedCheckpointer
from ..config import load_config, resolve_config_file
from ..data.register import checked_registration_files, run_registration_files
from .checks import check_device, check_max_iter
from .launch import launch
from .lock import output_dir_lock
from .log_file import setup_run_logging
from .trainer import Trainer, build_eval_model

logger = logging.getLogger("alignment_det")

EPILOG = """Examples:

Train MAL R101 on 8 GPUs:
    python train_net.py --config-file configs/mal_R101.py --num-gpus 8

Evaluate a checkpoint (COCO AP table):
    python train_net.py --config-file configs/mal_R101.py --eval-only train.init_checkpoint=model_final.pth

Resume the run in train.output_dir from its last checkpoint:
    python train_net.py --config-file configs/mal_R101.py --num-gpus 8 --resume

Train on your own datasets, registered by a Python file of yours (README: 'Training on your own dataset'):
    python train_net.py --register my_datasets.py --config-file configs/examples/custom_voc.py \
        dataloader.train.dataset.names=myvoc_train dataloader.test.dataset.names=myvoc_val model.num_classes=3

Overrides are key=value pairs after the options; an unknown key, or a value of the wrong
type, is an error (prefix '+' to add a key on purpose).
"""


def argument_parser():
    parser = default_argument_parser(epilog=EPILOG)
    # One file per flag: with nargs="+" the key=value overrides after it would be taken for files.
    parser.add_argument(
        "--register", action="append", default=[], metavar="FILE.py",
        help="a Python file that registers your datasets (alignment_det.data.register_coco_json / register_voc), "
        "run in every training process before the config is loaded; repeat for several files",
    )
    parser.add_argument(
        "--allow-arch-mismatch", action="store_true",
        help="--eval-only: evaluate a checkpoint saved by another meta-architecture or box coder than the "
        "config's (otherwise an error: its boxes would be decoded wrongly)",
    )
    parser.add_argument(
        "--allow-schedule-change", action="store_true",
        help="--resume: continue with a train.max_iter or lr schedule other than the checkpoint's (otherwise "
        "an error naming what would jump)",
    )
    return parser


def parse_args(argv=None):
    """The parsed command line; an option written after the overrides is an error saying that
    options come first (argparse would hand it to the overrides, refused as "not key=value")."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    misplaced = [o for o in args.opts if o.startswith("-")]
    if misplaced:
        overrides = [o for o in args.opts if not o.startswith("-")]
        parser.error(
            f"{' '.join(misplaced)} comes after the config overrides; options go first, overrides last, e.g. "
            f"train_net.py --config-file {args.config_file or 'CONFIG'} {' '.join(misplaced)} {' '.join(overrides)}"
        )
    return args


def eval_checkpoint_path(cfg, resume: bool) -> str:
    """--eval-only weights: the output dir's last checkpoint with --resume, else init_checkpoint."""
    if resume:
        ckpt = CheckedCheckpointer(None, cfg.train.output_dir)
        if ckpt.has_checkpoint():
            return ckpt.get_checkpoint_file()
        logger.warning("--resume: no checkpoint in %s, using train.init_checkpoint", cfg.train.output_dir)
    if not cfg.train.init_checkpoint:
        raise ValueError(
            "--eval-only needs weights: pass train.init_checkpoint=PATH_OR_URL, or --resume with a "
            f"checkpoint in train.output_dir ({cfg.train.output_dir})."
        )
    return cfg.train.init_checkpoint


def write_eval_results(output_dir: str, results, iteration: int) -> None:
    """--eval-only: store the evaluation results as training does (EvalHook + writers), one line in
    ``metrics.json`` and TensorBoard scalars named ``<task>/<metric>``, at ``iteration``."""
    flat = {k: float(v) for k, v in flatten_results_dict(results).items()}
    if not flat:
        return
    with EventStorage(iteration) as storage:
        storage.put_scalars(**flat, smoothing_hint=False)
        for writer in (JSONWriter(os.path.join(output_dir, "metrics.json")), TensorboardXWriter(output_dir)):
            writer.write()
            writer.close()


def main(args):
    # Here, not in invoke_main: launch() spawns fresh processes, and each one needs the datasets.
    run_registration_files(getattr(args, "register", []))
    cfg = load_config(args.config_file, args.opts)  # unknown keys, wrong types: before anything is built
    check_device(cfg)
    if not args.eval_only:
        check_max_iter(cfg)
    # One run per output folder (its first process holds the lock), for training and evaluation
    # alike: both write config.yaml, log.txt and results there.
    with output_dir_lock(cfg.train.output_dir, enabled=comm.is_main_process()) as dead_run:
        setup_run_logging(cfg.train.output_dir, comm.get_rank())  # before default_setup: colourless log.txt
        default_setup(cfg, args)
        if dead_run:
            logger.info("Took over the lock of %s from a run that is no longer running (%s).", cfg.train.output_dir, dead_run)
        if args.eval_only:
            model, iteration = build_eval_model(
                cfg, eval_checkpoint_path(cfg, args.resume), with_iteration=True,
                allow_arch_mismatch=getattr(args, "allow_arch_mismatch", False),
            )
            results = Trainer.test(cfg, model)
            if comm.is_main_process() and results:
                # Detectron2 writes no metrics.json in --eval-only; write the results as EvalHook would.
                write_eval_results(cfg.train.output_dir, results, iteration)
            return results
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume, allow_schedule_change=getattr(args, "allow_schedule_change", False))
        return trainer.train()


def invoke_main(argv=None):
    args = parse_args(argv)
    args.register = checked_registration_files(args.register)  # before any process is started
    # launch() reads the config file in every process, so resolve a zoo name once here.
    if args.config_file and not os.path.isfile(args.config_file):
        args.config_file = resolve_config_file(args.config_file)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


__all__ = ["argument_parser", "invoke_main", "main", "parse_args"]
