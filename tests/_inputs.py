"""The tiny models and random inputs of in-process tests (needs Detectron2): the instant-test
models (:func:`tiny_model`), ground truth (:func:`gt_instances`) and image batches
(:func:`random_batch`). Modules keep only the shapes of input their method needs."""
import os

import torch
from _cli import instant_config
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances

from alignment_det.config import load_config

H, W = 128, 160


def tiny_config(config: str, *overrides: str):
    """The LazyConfig of ``config`` (a file name under ``configs/quick_schedules/`` or a path) with
    command-line style ``overrides``."""
    path = config if os.path.sep in config else instant_config(config)
    return load_config(path, list(overrides))


def model_of(cfg, seed: int = 0) -> torch.nn.Module:
    """``cfg.model`` instantiated, its random init drawn after ``torch.manual_seed(seed)`` (in
    training mode, as instantiated)."""
    torch.manual_seed(seed)
    return instantiate(cfg.model)


def tiny_model(config: str, *overrides: str, seed: int = 0) -> torch.nn.Module:
    """The model of :func:`tiny_config` (see :func:`model_of`)."""
    return model_of(tiny_config(config, *overrides), seed)


def gt_instances(boxes, classes, size=(H, W)) -> Instances:
    """Ground truth ``Instances`` from (G, 4) XYXY boxes and (G,) classes (G may be 0)."""
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    return inst


def random_batch(*gts, seed=0, size=(H, W)):
    """One random (3, H, W) image in [0, 255) per ground-truth ``Instances``."""
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(3, *size, generator=g) * 255, "instances": gt} for gt in gts]
