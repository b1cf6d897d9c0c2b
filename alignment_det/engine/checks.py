"""Checks of a config against the machine and the data, run before anything trains or
evaluates, each failing with an error that names the setting to change."""
import logging
from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.data import MetadataCatalog
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..data.register import dataset_thing_classes
from .amp import resolve_amp_dtype

logger = logging.getLogger("alignment_det")

__all__ = [
    "ClassCountMismatchError",
    "ClassNamesMismatchError",
    "check_amp",
    "check_class_names",
    "check_dataset_classes",
    "check_device",
    "check_evaluator_classes",
    "check_max_iter",
    "lr_scale_for_batch",
    "model_num_classes",
]


class ClassCountMismatchError(ValueError):
    pass


class ClassNamesMismatchError(ValueError):
    pass


def check_amp(cfg) -> Optional[torch.dtype]:
    """The autocast dtype of ``train.amp`` on ``train.device`` (None: fp32), or an error that says
    which setting to change (:func:`alignment_det.engine.amp.resolve_amp_dtype`)."""
    return resolve_amp_dtype(cfg.train.get("amp", None), cfg.train.device)


def check_device(cfg) -> None:
    """A CUDA ``train.device`` on a machine where torch sees no GPU (Detectron2 would fail later
    with "Found no NVIDIA driver" or "Torch not compiled with CUDA enabled")."""
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        reason = "this torch is a CPU-only build" if torch.version.cuda is None else "no NVIDIA GPU/driver is visible"
        raise RuntimeError(
            f"train.device={cfg.train.device!r}, but torch cannot use CUDA here ({reason}). Add train.device=cpu "
            "to the command line to run on the CPU (slow for COCO-size models; the instant-test configs in "
            "configs/quick_schedules/ are made for it)."
        )


def check_max_iter(cfg) -> None:
    """Training needs ``train.max_iter >= 1``: with 0 Detectron2 builds everything, evaluates, then
    fails in its timer (ZeroDivisionError); a negative value trains nothing either."""
    max_iter = cfg.train.max_iter
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(
            f"train.max_iter={max_iter!r}: training needs at least 1 iteration. Set train.max_iter to a "
            "positive number, or use --eval-only to evaluate a checkpoint without training."
        )


# ----------------------------------------------------------------------------- classes
def model_num_classes(cfg) -> Optional[Tuple[str, int]]:
    """(override key, value) of the model's number of classes: the shallowest ``num_classes``
    in ``cfg.model`` that is a number, not an interpolation (``model.num_classes`` for every
    zoo config). None when the model has none."""
    queue = [("model", cfg.model)]
    while queue:
        prefix, node = queue.pop(0)
        if not isinstance(node, DictConfig):
            continue
        if "num_classes" in node and not OmegaConf.is_interpolation(node, "num_classes"):
            value = node.num_classes
            if isinstance(value, int) and not isinstance(value, bool):
                return f"{prefix}.num_classes", value
        queue += [(f"{prefix}.{k}", node._get_node(k)) for k in node.keys() if k != "num_classes"]
    return None


def _raise_mismatch(key: str, num: int, where: str, names: Sequence[str], classes: Sequence[str]) -> None:
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    raise ClassCountMismatchError(
        f"{key}={num}, but {where} {','.join(names)!r} has {len(classes)} classes ({shown}). "
        f"Set {key}={len(classes)} (README: 'Training on your own dataset')."
    )


def check_dataset_classes(cfg, dataset, *, where: str) -> None:
    """The model's number of classes against a loaded dataset.

    Args:
        dataset: what the config's dataset node built; an ``alignment_det.data.DatasetDicts``
            carries its datasets' class names, which must number exactly ``num_classes``. For
            another list of dicts, only category ids >= ``num_classes`` are detected.
        where: the config node, for the message (``dataloader.train``).
    """
    found = model_num_classes(cfg)
    if found is None:
        logger.debug("No num_classes in cfg.model: the class count is not checked.")
        return
    key, num = found
    classes = getattr(dataset, "thing_classes", None)
    if classes is not None:
        if len(classes) != num:
            _raise_mismatch(key, num, f"the dataset of {where}", dataset.names, classes)
        return
    if isinstance(dataset, list):
        ids = [a["category_id"] for d in dataset for a in d.get("annotations", ()) if "category_id" in a]
        if ids and max(ids) >= num:
            raise ClassCountMismatchError(
                f"{key}={num}, but the dataset of {where} has category_id {max(ids)} (ids count from 0). "
                f"Set {key} to its number of classes."
            )


def _evaluator_datasets(cfg) -> List[Tuple[str, str]]:
    """(config key, dataset name) of each evaluator's ``dataset_name``; ``dataloader.evaluator``
    may be one evaluator node or a list of them."""
    if "evaluator" not in cfg.dataloader:
        return []
    nodes = cfg.dataloader.evaluator
    nodes = list(nodes) if isinstance(nodes, (list, ListConfig)) else [nodes]
    out = []
    for i, node in enumerate(nodes):
        name = node.get("dataset_name", None) if isinstance(node, (dict, DictConfig)) else None
        if isinstance(name, str):
            out.append(("dataloader.evaluator" + (f"[{i}]" if len(nodes) > 1 else "") + ".dataset_name", name))
    return out


def check_evaluator_classes(cfg) -> None:
    """The model's number of classes against each evaluator's dataset (``dataset_name``)."""
    found = model_num_classes(cfg)
    if found is None:
        return
    for key, name in _evaluator_datasets(cfg):
        classes = dataset_thing_classes(name)
        if classes is not None and len(classes) != found[1]:
            _raise_mismatch(*found, f"the evaluator's dataset ({key})", [name], classes)


def _loader_datasets(cfg, split: str) -> Optional[Tuple[str, str]]:
    """(config key, first dataset name) of ``dataloader.<split>.dataset.names``, if it has one."""
    node = cfg.dataloader.get(split, None)
    dataset = node.get("dataset", None) if isinstance(node, DictConfig) else None
    names = dataset.get("names", None) if isinstance(dataset, DictConfig) else None
    if isinstance(names, (list, ListConfig)):
        names = names[0] if len(names) else None
    return (f"dataloader.{split}.dataset.names", names) if isinstance(names, str) else None


def check_class_names(cfg) -> None:
    """The train, test and evaluator datasets must have the same ``thing_classes``, by name and in
    order: class index k must mean one thing in training, in the test loader and in evaluation
    (a COCO json's classes follow its category ids, so two jsons with the same names under other
    ids disagree). Raises :class:`ClassNamesMismatchError` showing every list.

    The train and test datasets are compared when their class names are known without loading
    them (set at registration, or by loading them earlier in this process: the trainer loads
    both before training, and the test set before evaluation); each evaluator's dataset is loaded
    when needed, as its evaluator will.
    """
    sources = []
    for split in ("train", "test"):
        found = _loader_datasets(cfg, split)
        if found is not None:
            classes = MetadataCatalog.get(found[1]).get("thing_classes", None)
            if classes is not None:
                sources.append((*found, list(classes)))
    for key, name in _evaluator_datasets(cfg):
        classes = dataset_thing_classes(name)
        if classes is not None:
            sources.append((key, name, classes))
    if all(classes == sources[0][2] for _, _, classes in sources):
        return
    listed = "\n".join(f"  {key} {name!r}: {classes}" for key, name, classes in sources)
    raise ClassNamesMismatchError(
        "The datasets' class names differ (by name or by order), so class k would mean another class in "
        f"training, testing or evaluation:\n{listed}\nUse datasets with the same classes in the same order: "
        "COCO jsons with the same category ids and names (their order follows the ids), register_voc with the "
        "same class_names list (README: 'Training on your own dataset')."
    )


# ----------------------------------------------------------------------------- batch size
def lr_scale_for_batch(cfg) -> float:
    """Factor for ``optimizer.lr`` from the run's total batch vs the config's reference one.

    ``dataloader.reference_batch_size`` is the total batch the config's lr and schedule are
    for. When ``dataloader.train.total_batch_size`` differs, a warning says so; with
    ``train.auto_scale_lr=True`` the factor is total / reference (mmdetection's linear
    scaling rule, ``auto_scale_lr``), else 1. max_iter and the LR steps are never changed.
    """
    reference = cfg.dataloader.get("reference_batch_size", None)
    total = cfg.dataloader.train.get("total_batch_size", None)
    if not reference or not total or total == reference:
        return 1.0
    factor = total / reference
    lr = cfg.optimizer.get("lr", None)
    if cfg.train.get("auto_scale_lr", False):
        logger.warning(
            "Total batch %d differs from this config's reference batch %d (dataloader.reference_batch_size): "
            "train.auto_scale_lr=True scales the learning rate by %d/%d (optimizer.lr %s -> %s, mmdetection's "
            "linear rule). max_iter and the LR steps are unchanged.", total, reference, total, reference, lr,
            lr * factor if lr is not None else "x",
        )
        return factor
    logger.warning(
        "Total batch %d (dataloader.train.total_batch_size) differs from the %d this config's optimizer.lr and "
        "schedule are for (dataloader.reference_batch_size). Add train.auto_scale_lr=True to scale the lr "
        "linearly (%s -> %s), or set optimizer.lr yourself.", total, reference, lr,
        lr * factor if lr is not None else "x",
    )
    return 1.0
