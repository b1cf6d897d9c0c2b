"""``DefaultTrainer`` behaviour over LazyConfig.

Detectron2's ``DefaultTrainer`` reads the yacs config (``cfg.SOLVER.*``) in its
``__init__`` and builders, so those are overridden here to read the LazyConfig keys
(``cfg.model``, ``cfg.optimizer``, ``cfg.lr_multiplier``, ``cfg.dataloader.*``,
``cfg.train.*``); the public interface is kept (``build_model``, ``build_optimizer``,
``build_train_loader``, ``build_test_loader``, ``build_evaluator``, ``test``,
``resume_or_load``, ``train``) and ``run_step`` / ``state_dict`` are inherited.

Added over Detectron2: mixed precision on CUDA and CPU (``amp.py``: fp16 / bf16 autocast),
up-front checks (``checks.py``: CUDA device, AMP dtype, the model's number
of classes against the train, test and evaluator datasets, their class names against each
other, the total batch against the config's reference batch with ``train.auto_scale_lr``;
the test dataset, its images included, is loaded and checked before training too), image
reads that name a file that fails (``alignment_det.data.image_check``), an EMA of the weights
(``train.model_ema``, ``ema.py``) and atomic, resume-safe checkpoints (``checkpoint.py``).

Schedule on ``--resume``: every checkpoint records the run's schedule (``train.max_iter``, the lr
steps, and where the next iteration stands: its lr multiplier and progress ``iteration / max_iter``,
which MAL's selection count and the anchor depression follow). Resuming under another schedule
(``--resume train.max_iter=130`` on a finished 100-iteration run: lr x0.1 -> x1, MAL's lambda 1 ->
0.77) is an error naming what would jump, unless ``resume_or_load(allow_schedule_change=True)``
(``--allow-schedule-change``), which continues with a warning.

The evaluation after the last iteration is stamped (``metrics.json``, TensorBoard) at that
iteration, ``max_iter - 1``, as periodic evaluations and the checkpoint ``model_final.pth`` are, so
``--eval-only`` on the checkpoint writes the same iteration (Detectron2 stamps it ``max_iter``).
"""
import logging
import math
import os
import weakref
from collections import OrderedDict

import torch
from detectron2.config import instantiate
from detectron2.engine import DefaultTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.solver.build import _generate_optimizer_class_with_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.common.param_scheduler import ParamScheduler
from omegaconf import ListConfig, OmegaConf

from torch.nn.parallel import DistributedDataParallel

from .amp import AutocastTrainer
from ..checkpoint import CheckedCheckpointer, unwrap_model
from .checks import (
    check_amp,
    check_class_names,
    check_dataset_classes,
    check_device,
    check_evaluator_classes,
    check_max_iter,
    lr_scale_for_batch,
)
from ..config import instantiate_with
from ..data.image_check import ImageNamingMapper
from .ema import EMA_CHECKPOINT_KEY, ModelEMA, ModelEMAHook, load_ema_weights

logger = logging.getLogger("alignment_det")


def create_ddp_model(model: torch.nn.Module, *, device: str, **ddp_kwargs) -> torch.nn.Module:
    """Wrap in DDP when there are several processes, CPU included.

    Detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``, which DDP
    rejects for CPU modules; on CPU the processes talk over gloo (``launch`` picks it when
    no GPU is visible) and DDP gets no ``device_ids``.
    """
    if comm.get_world_size() == 1:
        return model
    fp16_compression = ddp_kwargs.pop("fp16_compression", False)
    if torch.device(device).type == "cuda":
        ddp_kwargs.setdefault("device_ids", [comm.get_local_rank()])
    else:
        ddp_kwargs["device_ids"] = None
    ddp = DistributedDataParallel(model, **ddp_kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def maybe_add_gradient_clipping(optimizer: torch.optim.Optimizer, clip_cfg) -> torch.optim.Optimizer:
    """Clip gradients inside ``optimizer.step`` as ``train.clip_grad`` says.

    ``clip_type``: "full_model" (one L2 norm over every parameter, DETR/DATE style),
    "norm" (per parameter) or "value". Reuses Detectron2's optimizer-class wrapper.
    """
    if not clip_cfg or not clip_cfg.get("enabled", False):
        return optimizer
    clip_type = clip_cfg.get("clip_type", "full_model")
    clip_value = float(clip_cfg["clip_value"])
    norm_type = float(clip_cfg.get("norm_type", 2.0))
    if clip_type == "full_model":
        kwargs = dict(global_clipper=lambda ps: torch.nn.utils.clip_grad_norm_(ps, clip_value, norm_type))
    elif clip_type == "norm":
        kwargs = dict(per_param_clipper=lambda p: torch.nn.utils.clip_grad_norm_(p, clip_value, norm_type))
    elif clip_type == "value":
        kwargs = dict(per_param_clipper=lambda p: torch.nn.utils.clip_grad_value_(p, clip_value))
    else:
        raise ValueError(f"train.clip_grad.clip_type must be full_model, norm or value, got {clip_type!r}")
    optimizer.__class__ = _generate_optimizer_class_with_gradient_clipping(type(optimizer), **kwargs)
    return optimizer


# Running statistics Detectron2's dense detectors keep in plain attributes through
# DenseDetector._ema_update (RetinaNet/FCOS: the EMA of the number of positives that
# normalises their losses). No checkpoint holds them, so a resumed run would restart the
# EMA at its initial value; the trainer's state_dict (saved in every checkpoint) does.
EMA_ATTRIBUTES = ("loss_normalizer",)


# Names without DDP's "module." prefix, so a checkpoint resumes under any world size.
_unwrap = unwrap_model


def ema_state_dict(model: torch.nn.Module) -> dict:
    """{submodule name: {attribute: value}} for the EMA attributes that are set."""
    model = _unwrap(model)
    out = {}
    for name, module in model.named_modules():
        values = {a: float(getattr(module, a)) for a in EMA_ATTRIBUTES if isinstance(getattr(module, a, None), (int, float))}
        if values:
            out[name] = values
    return out


def load_ema_state_dict(model: torch.nn.Module, state: dict) -> None:
    modules = dict(_unwrap(model).named_modules())
    for name, values in state.items():
        if name in modules:
            for attr, value in values.items():
                setattr(modules[name], attr, value)


def build_model(cfg) -> torch.nn.Module:
    """``instantiate(cfg.model)`` on ``train.device``, after checking that the device exists."""
    check_device(cfg)
    model = instantiate(cfg.model)
    return model.to(torch.device(cfg.train.device))


def _build_dataset(cfg, split: str):
    """Instantiate ``dataloader.<split>.dataset`` (``get_dataset_dicts`` checks its registration,
    files, images and boxes) and check its classes against the model."""
    dataset = instantiate(cfg.dataloader[split].dataset)
    check_dataset_classes(cfg, dataset, where=f"dataloader.{split}")
    return dataset


def _build_loader(cfg, split: str):
    """Instantiate ``dataloader.<split>``, its dataset first so that the dataset's classes are
    checked against the model before the loader exists; its mapper's failures to read an image
    name the file (``ImageNamingMapper``)."""
    node = cfg.dataloader[split]
    if "dataset" not in node:
        return instantiate(node)
    built = dict(dataset=_build_dataset(cfg, split))
    if node.get("mapper", None) is not None:
        built["mapper"] = ImageNamingMapper(instantiate(node.mapper))
    return instantiate_with(node, **built)


def check_data_before_training(cfg) -> None:
    """What evaluation will read, checked before the first iteration: the test dataset (its
    images, boxes and number of classes), the evaluators' numbers of classes, and the class
    names of the train, test and evaluator datasets (the train set already loaded)."""
    if "test" in cfg.dataloader and "dataset" in cfg.dataloader.test:
        _build_dataset(cfg, "test")
    check_evaluator_classes(cfg)
    check_class_names(cfg)


class LastStepEvalHook(hooks.EvalHook):
    """Detectron2's ``EvalHook`` whose evaluation after the last iteration is stamped at that
    iteration (``max_iter - 1``: the iteration of ``model_final.pth``, as a periodic evaluation is
    stamped at the iteration it follows) rather than at ``max_iter``.

    It runs at the end of the last step (after the checkpointer, before the writers, as periodic
    evaluations do); a run resumed with nothing left to train evaluates after training, as Detectron2
    does, stamped at ``max_iter - 1`` too.
    """

    _evaluated_last_step = False

    def after_step(self):
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            if self._eval_after_train:
                self._do_eval()
                self._evaluated_last_step = True
            return
        super().after_step()

    def after_train(self):
        if not self._evaluated_last_step and self._eval_after_train and self.trainer.iter + 1 >= self.trainer.max_iter:
            storage = self.trainer.storage
            stamp, storage.iter = storage.iter, self.trainer.max_iter - 1
            try:
                self._do_eval()
            finally:
                storage.iter = stamp  # the writers read it to tell that training ended
        del self._func  # as EvalHook: the closure holds the trainer


class Trainer(DefaultTrainer):
    """DefaultTrainer over a LazyConfig with keys ``model``, ``optimizer``,
    ``lr_multiplier``, ``dataloader.{train,test,evaluator}`` and ``train.*``
    (see ``configs/common/train.py`` for the ``train`` keys)."""

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logger.isEnabledFor(logging.INFO):
            # Our own logger only: a second setup_logger() of "detectron2" doubles every line.
            setup_logger(name="alignment_det")
        check_max_iter(cfg)
        amp_dtype = check_amp(cfg)
        # The data first: a dataset error then comes before the model is built.
        data_loader = self.build_train_loader(cfg)
        check_data_before_training(cfg)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        model = create_ddp_model(model, device=cfg.train.device, **cfg.train.ddp)
        if amp_dtype is None:
            self._trainer = SimpleTrainer(model, data_loader, optimizer)
        else:
            self._trainer = AutocastTrainer(model, data_loader, optimizer, device=cfg.train.device, precision=amp_dtype)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        ema_cfg = cfg.train.get("model_ema", None) or {}
        self.model_ema = ModelEMA(decay=ema_cfg.get("decay", 0.9998)) if ema_cfg.get("enabled", False) else None
        checkpointables = {EMA_CHECKPOINT_KEY: self.model_ema} if self.model_ema is not None else {}
        self.checkpointer = CheckedCheckpointer(
            model, cfg.train.output_dir, trainer=weakref.proxy(self), **checkpointables
        )
        self.start_iter = 0
        self.max_iter = cfg.train.max_iter
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True, *, allow_schedule_change: bool = False):
        """Resume from ``train.output_dir``'s newest readable checkpoint, else load
        ``train.init_checkpoint``.

        A finished run resumed from another file than ``model_final.pth`` (it was killed while
        writing it, or the file is unreadable) has nothing left to train: ``model_final.pth``
        is written again from the checkpoint of its last iteration.

        A checkpoint saved under another schedule (module doc) is an error naming what jumps, or
        with ``allow_schedule_change`` a warning.
        """
        self._checkpoint_schedule = None
        self.checkpointer.resume_or_load(self.cfg.train.init_checkpoint, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            self.check_schedule(self._checkpoint_schedule, allow_change=allow_schedule_change)
            resumed_from = os.path.basename(self.checkpointer.resumed_from or "")
            if self.start_iter >= self.max_iter and resumed_from != "model_final.pth" and comm.is_main_process():
                logger.warning("Writing model_final.pth again, from %s (iteration %d).", resumed_from, self.iter)
                self.checkpointer.save("model_final")

    def state_dict(self):
        ret = super().state_dict()
        ret["ema_state"] = ema_state_dict(self.model)
        ret["schedule"] = self.schedule_at(self.iter + 1)  # a resume starts at the next iteration
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        load_ema_state_dict(self.model, state_dict.get("ema_state", {}))
        self._checkpoint_schedule = state_dict.get("schedule")

    # ------------------------------------------------------------------ schedule
    def lr_steps(self):
        """Iterations where a multi-step lr multiplier steps (its milestones, counted in
        ``num_updates``, scaled to ``max_iter``); None for another kind of multiplier."""
        node = OmegaConf.select(self.cfg, "lr_multiplier.scheduler", default=None)
        if node is None or "milestones" not in node or "num_updates" not in node:
            return None
        return [int(round(m * self.max_iter / node.num_updates)) for m in node.milestones]

    def schedule_at(self, iteration: int) -> dict:
        """This run's schedule seen from ``iteration``: ``max_iter``, ``lr_steps``, the lr
        multiplier there (None when ``lr_multiplier`` is not a ParamScheduler) and the progress
        ``iteration / max_iter``. Plain numbers, so that a weights-only load reads them."""
        where = min(iteration / self.max_iter, 1.0)
        multiplier = float(self.scheduler(where)) if isinstance(self.scheduler, ParamScheduler) else None
        return {"max_iter": int(self.max_iter), "lr_steps": self.lr_steps(), "iteration": int(iteration),
                "lr_multiplier": multiplier, "progress": where}

    def check_schedule(self, saved, *, allow_change: bool) -> None:
        """Compare the schedule a checkpoint recorded (:meth:`schedule_at` of its next iteration)
        with this run's at ``start_iter``; a difference is an error, or a warning with ``allow_change``."""
        if not isinstance(saved, dict):
            return  # a checkpoint of an older version: nothing to compare
        now = self.schedule_at(self.start_iter)
        jumps = []
        if saved.get("max_iter") != now["max_iter"]:
            jumps.append(f"train.max_iter {saved.get('max_iter')} -> {now['max_iter']}")
        if saved.get("lr_steps") != now["lr_steps"]:
            jumps.append(f"lr steps at {saved.get('lr_steps')} -> {now['lr_steps']}")
        old_m, new_m = saved.get("lr_multiplier"), now["lr_multiplier"]
        if old_m is not None and new_m is not None and not math.isclose(old_m, new_m, rel_tol=1e-6):
            base = self.optimizer.param_groups[0].get("initial_lr") if self.optimizer.param_groups else None
            lr = f" (lr {old_m * base:g} -> {new_m * base:g})" if base else ""
            jumps.append(f"lr multiplier x{old_m:g} -> x{new_m:g}{lr}")
        old_p = saved.get("progress")
        if old_p is not None and not math.isclose(old_p, now["progress"], rel_tol=1e-6):
            jumps.append(
                f"training progress iteration/max_iter {old_p:.3f} -> {now['progress']:.3f} (MAL's selection "
                "count and anchor depression, and other schedules of t/T, follow it)"
            )
        if not jumps:
            return
        message = (
            f"--resume at iteration {self.start_iter} with another schedule than the checkpoint's: "
            + "; ".join(jumps) + "."
        )
        if allow_change:
            logger.warning("%s Continuing with the new schedule (--allow-schedule-change).", message)
            return
        raise ValueError(
            f"{message} Resume with the checkpoint's schedule (train.max_iter={saved.get('max_iter')}), or pass "
            "--allow-schedule-change to continue with the new one from here."
        )

    def build_hooks(self):
        cfg = self.cfg
        ret = [hooks.IterationTimer(), hooks.LRScheduler(scheduler=self.scheduler)]
        if self.model_ema is not None:  # before the checkpointer and evaluation, which use it
            ret.append(ModelEMAHook(self.model_ema, _unwrap(self.model)))
        if comm.is_main_process():
            ret.append(hooks.PeriodicCheckpointer(self.checkpointer, **cfg.train.checkpointer))
        use_ema = self.model_ema is not None and cfg.train.model_ema.get("use_ema_for_eval", True)

        def test_and_save_results():
            if use_ema:
                with self.model_ema.applied_to(_unwrap(self.model)):
                    self._last_eval_results = self.test(self.cfg, self.model)
            else:
                self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        ret.append(LastStepEvalHook(cfg.train.eval_period, test_and_save_results))
        if comm.is_main_process():
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=cfg.train.log_period))
        return ret

    def build_writers(self):
        """Console (with ETA), ``metrics.json`` and TensorBoard, as Detectron2's default."""
        return default_writers(self.cfg.train.output_dir, self.max_iter)

    def train(self):
        super(DefaultTrainer, self).train(self.start_iter, self.max_iter)
        return getattr(self, "_last_eval_results", None)

    @classmethod
    def build_model(cls, cfg):
        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        cfg.optimizer.params.model = model
        try:
            optimizer = instantiate(cfg.optimizer)
        finally:
            # The model must not stay in the config: LazyConfig.save would try to pickle it.
            cfg.optimizer.params.model = None
        scale = lr_scale_for_batch(cfg)  # warns when the total batch is not the reference one
        for group in optimizer.param_groups:  # every group, so per-group lr factors are kept
            group["lr"] *= scale
        return maybe_add_gradient_clipping(optimizer, cfg.train.get("clip_grad"))

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return instantiate(cfg.lr_multiplier)

    @classmethod
    def build_train_loader(cls, cfg):
        """``dataloader.train``; its dataset's classes must number ``model.num_classes``."""
        return _build_loader(cfg, "train")

    @classmethod
    def build_test_loader(cls, cfg, dataset_name=None):
        """``dataloader.test``; its dataset's classes must number ``model.num_classes``."""
        return _build_loader(cfg, "test")

    @classmethod
    def build_evaluator(cls, cfg, dataset_name=None):
        """``dataloader.evaluator``: one evaluator, or a list run together (e.g. COCO + alignment)."""
        if "evaluator" not in cfg.dataloader:
            return None
        evaluator = instantiate(cfg.dataloader.evaluator)
        if isinstance(evaluator, (list, tuple, ListConfig)):
            return DatasetEvaluators(list(evaluator))
        return evaluator

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Run ``dataloader.test`` through ``dataloader.evaluator``; print the COCO table."""
        # The loader first: instantiating it loads (and for the synthetic set, writes) the
        # dataset, which the evaluator's json_file then refers to.
        loader = cls.build_test_loader(cfg)
        evaluator = evaluators if evaluators is not None else cls.build_evaluator(cfg)
        if evaluator is None:
            logger.warning("No dataloader.evaluator in the config: skipping evaluation.")
            return OrderedDict()
        if evaluators is None:
            check_evaluator_classes(cfg)
            check_class_names(cfg)
        results = inference_on_dataset(model, loader, evaluator)
        if comm.is_main_process() and results:
            print_csv_format(results)
        return results


def build_eval_model(cfg, checkpoint: str, *, with_iteration: bool = False, allow_arch_mismatch: bool = False):
    """The model of ``cfg`` with weights from ``checkpoint``, ready for ``Trainer.test``: the
    checkpoint's EMA weights when it has them and ``train.model_ema.use_ema_for_eval`` (default
    True), else its raw weights. Loading is strict (every model parameter must be there), and a
    checkpoint saved by another meta-architecture or box coder is an error unless
    ``allow_arch_mismatch`` (then a warning).
    ``with_iteration=True`` returns ``(model, iteration the checkpoint was saved at, 0 if none)``."""
    model = Trainer.build_model(cfg)
    model = create_ddp_model(model, device=cfg.train.device, **cfg.train.ddp)
    arch_mismatch = "warn" if allow_arch_mismatch else "error"
    extra = CheckedCheckpointer(model, cfg.train.output_dir, strict=True, arch_mismatch=arch_mismatch).load(checkpoint)
    ema_cfg = cfg.train.get("model_ema", None) or {}
    if EMA_CHECKPOINT_KEY in extra and ema_cfg.get("use_ema_for_eval", True):
        load_ema_weights(_unwrap(model), extra[EMA_CHECKPOINT_KEY])
        logger.info(
            "Evaluating the EMA weights of %s (train.model_ema.use_ema_for_eval=False evaluates its raw weights).",
            checkpoint,
        )
    elif ema_cfg.get("enabled", False) and EMA_CHECKPOINT_KEY not in extra:
        logger.warning("train.model_ema.enabled=True, but %s holds no EMA weights: evaluating its raw weights.", checkpoint)
    model.eval()
    return (model, int(extra.get("iteration", 0))) if with_iteration else model


__all__ = ["Trainer", "build_eval_model", "build_model", "create_ddp_model", "maybe_add_gradient_clipping"]
