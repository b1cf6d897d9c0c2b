"""Presets: the zoo configs scaled down the same way for every method.

A comparison between a method and its baseline is only fair when everything that is not the
method is the same. A preset fixes exactly that, for any zoo config:

* backbone: ResNet of ``depth`` from scratch (no pretrained weights can be fetched here), with
  trainable BN (from scratch a FrozenBN is an identity and the net diverges), ``freeze_at=0``;
* FPN and head width ``channels``, ``head_convs`` convs per tower;
* data: the named train / test datasets, ``train_short_edges`` (one picked per image) + flip,
  ``test_short_edge``, long side <= ``max_size``, ``batch_size`` images per iteration, COCO AP;
* schedule: ``max_iter`` iterations, linear warm-up over ``warmup_iters`` from
  ``warmup_factor``, lr x0.1 at each of ``steps``; gradient clipping of the full-model norm at
  ``clip_value`` (a config that already clips, DATE at 0.1, keeps its own value);
* seed, evaluation / logging / checkpoint periods, device.

What makes a method stays its own: head, assignment, losses, inference, and its optimizer family
(SGD for RetinaNet, FCOS, MAL, RetinaNet-Conf, ALWA; AdamW for DATE, with its backbone lr factor),
which gets the preset's learning rate for that family (``lr``). Hyper-parameters tied to the
training horizon follow ``train.max_iter`` by interpolation (MAL's ``model.max_iter``), so they
follow the preset too.

Presets (:data:`PRESETS`):

* ``instant``: the CPU smoke tests of ``configs/quick_schedules/`` (R18, 64 channels, ~128 px
  synthetic shapes, 100 iterations);
* ``cpu``: the quick accuracy benchmark on 2 CPU cores (R18, 64 channels, short side 256, batch 4,
  400 iterations: the curves still climb);
* ``cpu_long``: the same model and data over 3,000 iterations, for baselines that flatten;
* ``gpu``: the accuracy benchmark on one GPU (R50, 128 channels, short side 512, batch 16).

Used by ``configs/quick_schedules/instant_common.py`` and ``benchmarks/accuracy.py``; it is in the
package, not under ``configs/``, so that configs generated anywhere (a benchmark's run folder)
can import it.
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet
from omegaconf import DictConfig

from .schedules import multistep

__all__ = [
    "PRESETS", "Preset", "apply_preset", "get_preset", "optimizer_family", "scale_backbone",
    "scale_down_and_get_lr_multiplier", "scale_model", "set_data", "set_schedule",
]


@dataclass(frozen=True)
class Preset:
    """What every method shares in a comparison; see the module docstring."""

    name: str
    # model
    depth: int
    norm: str
    channels: int
    head_convs: int
    # data
    train_short_edges: Tuple[int, ...]
    test_short_edge: int
    max_size: int
    batch_size: int
    num_workers: int
    # schedule
    max_iter: int
    steps: Tuple[int, ...]
    warmup_iters: int
    warmup_factor: float
    lr: Dict[str, float]  # optimizer family (class name) -> base lr
    clip_value: float
    # bookkeeping
    eval_period: int
    log_period: int
    checkpoint_period: int
    checkpoints_to_keep: int
    device: str
    # autocast dtype for training ("bfloat16" / "float16"), None for fp32
    amp_dtype: Optional[str] = None

    def with_max_iter(self, max_iter: Optional[int]) -> "Preset":
        """The same preset over ``max_iter`` iterations: decay steps, warm-up and the evaluation
        and checkpoint periods scale with it (a reduced budget keeps the schedule's shape)."""
        if max_iter is None or max_iter == self.max_iter:
            return self
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        r = max_iter / self.max_iter

        def scaled(n: int) -> int:
            return max(1, round(n * r)) if n > 0 else 0

        return dataclasses.replace(
            self,
            name=f"{self.name}@{max_iter}",
            max_iter=max_iter,
            # A decay at or after the last iteration would never apply (and fvcore refuses it).
            steps=tuple(sorted({scaled(s) for s in self.steps if scaled(s) < max_iter})),
            warmup_iters=round(self.warmup_iters * r),
            eval_period=scaled(self.eval_period),
            checkpoint_period=scaled(self.checkpoint_period),
        )

    def describe(self) -> str:
        """One line for tables and logs."""
        lrs = ", ".join(f"{k} {v:g}" for k, v in self.lr.items())
        return (
            f"ResNet-{self.depth} ({self.norm}, from scratch), FPN/head {self.channels} ch x {self.head_convs} convs; "
            f"train short side {'/'.join(map(str, self.train_short_edges))} + flip, test {self.test_short_edge}, "
            f"long side <= {self.max_size}; batch {self.batch_size}; {self.max_iter} it, warm-up {self.warmup_iters} it "
            f"from x{self.warmup_factor:g}, lr x0.1 at {', '.join(map(str, self.steps)) or 'never'}; lr {lrs}; "
            f"grad-norm clip {self.clip_value:g} unless the method clips; eval every {self.eval_period or self.max_iter} it"
            + (f"; {self.amp_dtype} autocast" if self.amp_dtype else "")
        )


PRESETS: Dict[str, Preset] = {
    # The instant tests (unchanged by the move into presets): R18 from scratch, 64 channels,
    # 2 convs per tower, synthetic shapes at ~128 px, 100 iterations. A from-scratch tiny net at
    # lr 0.01 sees gradient-norm spikes (40-12000 against ~1-5 normally): RetinaNet's instant test
    # hit a NaN loss at iteration 76 and MAL's bag loss collapsed to all-zero scores without
    # clipping the full-model norm at 10 (mmdet's FreeAnchor configs clip at 35 for R50).
    "instant": Preset(
        name="instant", depth=18, norm="BN", channels=64, head_convs=2,
        train_short_edges=(112, 128, 144), test_short_edge=128, max_size=192, batch_size=4, num_workers=0,
        max_iter=100, steps=(80,), warmup_iters=10, warmup_factor=0.1,
        lr={"SGD": 0.01, "AdamW": 1e-3}, clip_value=10.0,
        eval_period=0, log_period=5, checkpoint_period=50, checkpoints_to_keep=3, device="cpu",
    ),
    # 2 CPU cores: the instant-test model at a short side of 256 px. 9 configs x 2 seeds must
    # finish in about two hours: one run of 400 iterations takes 6-7 min of CPU time at one
    # thread (0.9-1.9 s/it), so the 18 runs take about an hour with two running side by side.
    "cpu": Preset(
        name="cpu", depth=18, norm="BN", channels=64, head_convs=2,
        train_short_edges=(224, 256, 288), test_short_edge=256, max_size=480, batch_size=4, num_workers=1,
        max_iter=400, steps=(300, 360), warmup_iters=50, warmup_factor=0.001,
        lr={"SGD": 0.01, "AdamW": 1e-3}, clip_value=10.0,
        eval_period=100, log_period=20, checkpoint_period=100, checkpoints_to_keep=1, device="cpu",
    ),
    # One GPU: R50 from scratch, 128 channels x 4 convs, short side 448-576, batch 16 (twice the
    # cpu preset's images seen, 4x the pixels, a backbone ~2.5x deeper in FLOPs per pixel).
    # Measured on one H200 (fp32, RetinaNet on chess): 0.164 s per iteration, 15.3 GB; 400
    # iterations are far from a plateau (3.2 AP after 300), and 3,000 take about 9 minutes per run.
    # Size the budget with benchmarks/accuracy.py --max-iter.
    "gpu": Preset(
        name="gpu", depth=50, norm="BN", channels=128, head_convs=4,
        train_short_edges=(448, 480, 512, 544, 576), test_short_edge=512, max_size=853, batch_size=16, num_workers=8,
        max_iter=400, steps=(300, 360), warmup_iters=50, warmup_factor=0.001,
        lr={"SGD": 0.02, "AdamW": 1e-3}, clip_value=10.0,
        eval_period=100, log_period=20, checkpoint_period=100, checkpoints_to_keep=1, device="cuda",
    ),
}


# The cpu preset's model and data over a longer budget, for baselines that stop improving: 3,000
# iterations (the cap we allow on 2 cores; the baselines' curves decide whether it can shrink),
# lr x0.1 at 85 % and 95 % of the schedule, an evaluation every 10 %. fp32: on the 2-core
# benchmark VM (Xeon with AVX512F/VNNI but no AVX512-BF16) a bf16-autocast step of this model
# took 3.0x as long as an fp32 one (benchmarks/compare.py, interleaved); set amp_dtype where
# the CPU has native bf16.
PRESETS["cpu_long"] = dataclasses.replace(
    PRESETS["cpu"], name="cpu_long", max_iter=3000, steps=(2550, 2850), warmup_iters=100, eval_period=300,
    checkpoint_period=300,
)


def get_preset(name: str, *, max_iter: Optional[int] = None) -> Preset:
    """``PRESETS[name]``, optionally over another number of iterations (:meth:`Preset.with_max_iter`)."""
    if name not in PRESETS:
        raise KeyError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    return PRESETS[name].with_max_iter(max_iter)


def _as_preset(preset) -> Preset:
    return get_preset(preset) if isinstance(preset, str) else preset


# ------------------------------------------------------------------------------------ model
def res5_channels(depth: int) -> int:
    """Output channels of a Detectron2 ResNet's res5: BasicBlock nets (18/34) 512, bottleneck nets 2048."""
    return 512 if depth in (18, 34) else 2048


def scale_backbone(model: DictConfig, preset) -> DictConfig:
    """ResNet from scratch at the preset's depth and trainable BN, FPN (and P6/P7) at its width;
    returns ``model``. Shared by dense detectors (:func:`scale_model`) and two-stage ones."""
    preset = _as_preset(preset)
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = preset.norm
    stages = dict(depth=preset.depth, norm=preset.norm)
    if preset.depth >= 50:
        # torchvision-style stride in the 3x3 conv: no MSRA (caffe) weights to match from scratch.
        stages["stride_in_1x1"] = False
    bottom_up.stages = L(ResNet.make_default_stages)(**stages)
    bottom_up.freeze_at = 0
    model.backbone.out_channels = preset.channels
    top = model.backbone.get("top_block", None)
    if top is not None and "in_channels" in top:
        # LastLevelP6P7 reads C5 (RetinaNet-style; Detectron2's default in_feature "res5") or P5 (FCOS).
        top.in_channels = preset.channels if top.get("in_feature", "res5") == "p5" else res5_channels(preset.depth)
    return model


def scale_model(model: DictConfig, preset, *, num_classes: int) -> None:
    """Backbone from scratch at the preset's depth, FPN and head at its width, ``num_classes``."""
    preset = _as_preset(preset)
    det = scale_backbone(model, preset)
    head = det.head
    for key in ("input_shape", "conv_dims"):
        if key not in head:
            raise ValueError(
                f"The preset cannot scale head {head.get('_target_')!r}: it has no {key!r} argument "
                "(expected a RetinaNetHead / FCOSHead-like head)."
            )
    head.input_shape = [ShapeSpec(channels=preset.channels)] * len(head.input_shape)
    head.conv_dims = [preset.channels] * preset.head_convs
    det.num_classes = int(num_classes)


# ------------------------------------------------------------------------------------ data
def set_data(dataloader: DictConfig, preset, *, train_dataset: str, test_dataset: str, output_dir: str) -> None:
    """Point the loaders at the datasets, at the preset's sizes and batch; COCO AP on the test set.

    ``output_dir``: the evaluator's folder (needed for datasets without a COCO json, e.g. VOC).
    """
    preset = _as_preset(preset)
    train, test = dataloader.train, dataloader.test
    train.dataset.names = train_dataset
    train.mapper.augmentations = [
        L(T.ResizeShortestEdge)(
            short_edge_length=tuple(preset.train_short_edges), sample_style="choice", max_size=preset.max_size
        ),
        L(T.RandomFlip)(horizontal=True),
    ]
    train.total_batch_size = preset.batch_size
    # The batch the preset's learning rates are for (the trainer warns when a run's differs).
    dataloader.reference_batch_size = preset.batch_size
    train.num_workers = preset.num_workers
    test.dataset.names = test_dataset
    test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=preset.test_short_edge, max_size=preset.max_size)]
    test.num_workers = preset.num_workers
    dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", output_dir=output_dir)


# ------------------------------------------------------------------------------------ solver
def optimizer_family(optimizer: DictConfig) -> str:
    """The optimizer's class name ("SGD", "AdamW"), from a loaded or a saved-and-reloaded config."""
    target = optimizer._target_
    return target.__name__ if isinstance(target, type) else str(target).rsplit(".", 1)[-1]


def set_schedule(optimizer: DictConfig, train: DictConfig, preset, *, seed: int, output_dir: str):
    """The preset's schedule, lr (by optimizer family), clipping and bookkeeping; returns the
    ``lr_multiplier`` node."""
    preset = _as_preset(preset)
    family = optimizer_family(optimizer)
    if family not in preset.lr:
        raise ValueError(
            f"Preset {preset.name!r} has no learning rate for optimizer {family}; it knows {sorted(preset.lr)}. "
            "Add one to the preset's lr table."
        )
    optimizer.lr = preset.lr[family]
    train.max_iter = preset.max_iter
    train.init_checkpoint = ""
    train.device = preset.device
    train.output_dir = output_dir
    train.eval_period = preset.eval_period
    train.log_period = preset.log_period
    train.checkpointer = dict(period=preset.checkpoint_period, max_to_keep=preset.checkpoints_to_keep)
    train.seed = int(seed)
    train.amp = dict(enabled=preset.amp_dtype is not None, dtype=preset.amp_dtype)
    if not train.clip_grad.enabled:
        train.clip_grad.update(enabled=True, clip_type="full_model", clip_value=preset.clip_value)
    # Every preset trains from scratch: a learning-rate factor that protects pretrained backbone
    # weights (DATE's backbone x0.1) only slows a random backbone down. On cards, cpu preset,
    # seed 0: DATE-F 5.0 AP with the backbone at x0.1, 9.7 AP at x1.
    lr_factor = optimizer.get("params", {}).get("lr_factor_func", None)
    if isinstance(lr_factor, DictConfig) and "factor" in lr_factor:
        lr_factor.factor = 1.0
    return multistep(preset.max_iter, preset.steps, warmup_iters=preset.warmup_iters, warmup_factor=preset.warmup_factor)


# ------------------------------------------------------------------------------------ all
def scale_down_and_get_lr_multiplier(
    model: DictConfig,
    dataloader: DictConfig,
    optimizer: DictConfig,
    train: DictConfig,
    preset,
    *,
    train_dataset: str,
    test_dataset: str,
    num_classes: int,
    seed: int,
    output_dir: str,
    evaluator_output_dir: str = "${...train.output_dir}",
):
    """Apply ``preset`` to a config's nodes in place (for config files, which hold them as
    module-level names); returns the ``lr_multiplier`` node."""
    preset = _as_preset(preset)
    scale_model(model, preset, num_classes=num_classes)
    set_data(dataloader, preset, train_dataset=train_dataset, test_dataset=test_dataset, output_dir=evaluator_output_dir)
    return set_schedule(optimizer, train, preset, seed=seed, output_dir=output_dir)


def apply_preset(cfg: DictConfig, preset, **kwargs) -> DictConfig:
    """:func:`scale_down_and_get_lr_multiplier` on a whole loaded config (``model``, ``dataloader``, ``optimizer``,
    ``train``); sets ``cfg.lr_multiplier`` and returns ``cfg``."""
    cfg.lr_multiplier = scale_down_and_get_lr_multiplier(cfg.model, cfg.dataloader, cfg.optimizer, cfg.train, preset, **kwargs)
    return cfg

