"""Time one config against another in the same process on the same batches.

Both models are built from their configs (random init, same seed), then each timed
step alternates between them (A, B, A, B, ...) so drift of the machine (turbo, other
load) hits both alike. A training step is forward + backward (no optimizer step, so the
weights and hence the work stay the same every step); an inference step is an eval-mode
forward under ``torch.no_grad``. Medians are reported with the ratio B / A.
"""
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from alignment_det.engine.config import load_config


@dataclass
class Timing:
    name: str
    train_s: List[float]
    infer_s: List[float]

    @property
    def train_median(self) -> float:
        return statistics.median(self.train_s) if self.train_s else float("nan")

    @property
    def infer_median(self) -> float:
        return statistics.median(self.infer_s) if self.infer_s else float("nan")


def synthetic_batch(
    *, batch_size: int, height: int, width: int, num_boxes: int, num_classes: int, seed: int
) -> List[Dict]:
    """Random images with ``num_boxes`` random boxes each (sides 8 px to min(200, 0.9 x image
    side) px, inside the image), in Detectron2's input format."""
    g = torch.Generator().manual_seed(seed)
    max_side = min(200.0, 0.9 * min(height, width))
    batch = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8).float()
        wh = torch.rand(num_boxes, 2, generator=g) * (max_side - 8) + 8
        xy = torch.rand(num_boxes, 2, generator=g) * (torch.tensor([width, height]) - wh)
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, num_classes, (num_boxes,), generator=g)
        batch.append({"image": image, "instances": inst, "height": height, "width": width})
    return batch


def build_model(config_file: str, overrides: Sequence[str], device: str, seed: int):
    cfg = load_config(config_file, overrides)
    torch.manual_seed(seed)
    model = instantiate(cfg.model).to(device)
    num_classes = cfg.model.get("num_classes", None) or 80
    return model, int(num_classes)


def _sync(device: str):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _train_step(model, batch, device):
    model.train()
    _sync(device)
    t0 = time.perf_counter()
    losses = model(batch)
    sum(losses.values()).backward()
    _sync(device)
    dt = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return dt


@torch.no_grad()
def _infer_step(model, batch, device):
    model.eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in batch]
    _sync(device)
    t0 = time.perf_counter()
    model(inputs)
    _sync(device)
    return time.perf_counter() - t0


def compare(
    configs: Sequence[str],
    *,
    overrides: Sequence[Sequence[str]] = ((), ()),
    names: Sequence[str] = ("A", "B"),
    batch_size: int = 2,
    height: int = 512,
    width: int = 640,
    num_boxes: int = 10,
    iters: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    modes: Sequence[str] = ("train", "infer"),
    seed: int = 0,
) -> List[Timing]:
    """Time ``configs`` (usually baseline, method) on identical synthetic batches."""
    models, classes = [], []
    for cfg_file, opts in zip(configs, overrides):
        m, k = build_model(cfg_file, list(opts), device, seed)
        models.append(m)
        classes.append(k)
    batches = [
        synthetic_batch(
            batch_size=batch_size, height=height, width=width, num_boxes=num_boxes,
            num_classes=min(classes), seed=seed + i,
        )
        for i in range(warmup + iters)
    ]
    timings = [Timing(n, [], []) for n in names]
    # Detectron2's losses log to an EventStorage, as inside the trainer.
    with EventStorage(0):
        _run(models, batches, timings, modes, warmup, device)
    return timings


def _run(models, batches, timings, modes, warmup, device):
    for mode in modes:
        step = _train_step if mode == "train" else _infer_step
        for i, batch in enumerate(batches):
            for model, timing in zip(models, timings):
                dt = step(model, batch, device)
                if i >= warmup:
                    (timing.train_s if mode == "train" else timing.infer_s).append(dt)


def report(timings: Sequence[Timing], *, title: str = "") -> str:
    """A Markdown table of medians and the ratio of each config to the first."""
    base = timings[0]
    lines = [title] if title else []
    lines += [
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "| config | train step (ms, median) | ratio | inference (ms, median) | ratio |",
        "|---|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | {t.train_median * 1e3:.1f} | {t.train_median / base.train_median:.3f} "
            f"| {t.infer_median * 1e3:.1f} | {t.infer_median / base.infer_median:.3f} |"
        )
    return "\n".join(lines)
