"""Time one config against another in the same process on the same batches, with peak memory.

Both models are built from their configs (random init, same seed), then each timed
step alternates between them (A, B, A, B, ...) so drift of the machine (turbo, other
load) hits both alike. A training step is forward + backward (no optimizer step, so the
weights and hence the work stay the same every step); an inference step is an eval-mode
forward under ``torch.no_grad``. Medians are reported with the ratio B / A.

Each step is timed by :class:`StepTimer`: on CUDA by two ``torch.cuda.Event`` records around the
step on the current stream (after a synchronize, so no earlier work is counted), on CPU by
``time.perf_counter``.

Each step's peak memory is measured too (:class:`PeakMemory`): the most memory in use during
the step above what was in use when it began (both models' weights are resident throughout, so
this is the step's own activations, gradients and workspace). On CUDA it is
``torch.cuda.max_memory_allocated`` (reset before each step); on Linux CPUs the process's peak
resident memory ``VmHWM``, reset before each step through ``/proc/self/clear_refs``, minus its
resident memory ``VmRSS`` at the start. The largest value over the timed steps is reported.
"""
import ctypes
import ctypes.util
import math
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from alignment_det.engine.amp import resolve_amp_dtype
from alignment_det.config import load_config


@dataclass
class Timing:
    """Per timed step: seconds and peak memory in bytes (NaN where memory cannot be measured)."""

    name: str
    train_s: List[float]
    infer_s: List[float]
    train_bytes: List[float] = field(default_factory=list)
    infer_bytes: List[float] = field(default_factory=list)

    @property
    def train_median(self) -> float:
        return statistics.median(self.train_s) if self.train_s else float("nan")

    @property
    def infer_median(self) -> float:
        return statistics.median(self.infer_s) if self.infer_s else float("nan")

    @property
    def train_peak(self) -> float:
        return max(self.train_bytes) if self.train_bytes else float("nan")

    @property
    def infer_peak(self) -> float:
        return max(self.infer_bytes) if self.infer_bytes else float("nan")


def _proc_status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _cpu_peak_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _proc_status_kib("VmHWM")
        return True
    except OSError:
        return False


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if platform.system() == "Linux" else None


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.bytes``: peak memory in use during the block
    above the memory in use when it began (CUDA: allocated by torch; CPU: resident, Linux only,
    else NaN)."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"
        self.supported = self.cuda or _cpu_peak_supported()
        self.bytes = float("nan")

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        elif self.supported:
            if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
                # Return freed heap to the OS first, so that RSS is the memory really in use (glibc
                # keeps small freed blocks, which the previous step would otherwise leave counted).
                _LIBC.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
            self._start = _proc_status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = float(torch.cuda.max_memory_allocated() - self._start)
        elif self.supported:
            self.bytes = float(_proc_status_kib("VmHWM") * 1024 - self._start)
        return False


class StepTimer:
    """``with StepTimer(device) as t: ...`` then ``t.seconds``: the time the block took. On CUDA the
    time between two ``torch.cuda.Event`` records on the current stream, the first after a
    synchronize (so queued work from before is not counted), the second waited for at exit; on CPU
    ``time.perf_counter``."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = float("nan")

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1e3  # elapsed_time is in ms
        else:
            self.seconds = time.perf_counter() - self._t0
        return False


def random_boxes(num_boxes: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(num_boxes, 4) XYXY random boxes inside the image, sides 8 px to min(200, 0.9 x image side) px."""
    max_side = min(200.0, 0.9 * min(height, width))
    wh = torch.rand(num_boxes, 2, generator=generator) * (max_side - 8) + 8
    xy = torch.rand(num_boxes, 2, generator=generator) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


def synthetic_batch(
    *, batch_size: int, height: int, width: int, num_boxes: int, num_classes: int, seed: int
) -> List[Dict]:
    """Random images with ``num_boxes`` :func:`random_boxes` each, in Detectron2's input format."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8).float()
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(random_boxes(num_boxes, height, width, g))
        inst.gt_classes = torch.randint(0, num_classes, (num_boxes,), generator=g)
        batch.append({"image": image, "instances": inst, "height": height, "width": width})
    return batch


def build_model(config_file: str, overrides: Sequence[str], device: str, seed: int):
    """(model on ``device``, number of classes, autocast dtype of the config's ``train.amp`` or None)."""
    cfg = load_config(config_file, overrides)
    torch.manual_seed(seed)
    model = instantiate(cfg.model).to(device)
    num_classes = cfg.model.get("num_classes", None) or 80
    amp_dtype = resolve_amp_dtype(cfg.train.get("amp", None), device) if "train" in cfg else None
    return model, int(num_classes), amp_dtype


def _train_step(model, batch, device, amp_dtype=None):
    """(seconds, peak bytes) of forward + backward, under autocast in ``amp_dtype`` (the config's
    ``train.amp``, as the trainer does; None: fp32); gradients are freed before the next step."""
    model.train()
    with PeakMemory(device) as mem:
        with StepTimer(device) as timer:
            with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
                losses = model(batch)
            sum(losses.values()).backward()
        del losses
    model.zero_grad(set_to_none=True)
    return timer.seconds, mem.bytes


@torch.no_grad()
def _infer_step(model, batch, device, amp_dtype=None):
    """(seconds, peak bytes) of an eval-mode forward (fp32, as the trainer's evaluation; ``amp_dtype``
    is not used)."""
    model.eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in batch]
    with PeakMemory(device) as mem:
        with StepTimer(device) as timer:
            outputs = model(inputs)
        del outputs
    return timer.seconds, mem.bytes


def time_configs(
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
    models, classes, amp_dtypes = [], [], []
    for cfg_file, opts in zip(configs, overrides):
        m, k, amp_dtype = build_model(cfg_file, list(opts), device, seed)
        models.append(m)
        classes.append(k)
        amp_dtypes.append(amp_dtype)
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
        _run(models, amp_dtypes, batches, timings, modes, warmup, device)
    return timings


def _run(models, amp_dtypes, batches, timings, modes, warmup, device):
    for mode in modes:
        step = _train_step if mode == "train" else _infer_step
        for i, batch in enumerate(batches):
            for model, amp_dtype, timing in zip(models, amp_dtypes, timings):
                dt, peak = step(model, batch, device, amp_dtype)
                if i >= warmup:
                    (timing.train_s if mode == "train" else timing.infer_s).append(dt)
                    (timing.train_bytes if mode == "train" else timing.infer_bytes).append(peak)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.3f}" if base and not (math.isnan(value) or math.isnan(base)) else "n/a"


def _mib(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value / 2**20:.0f}"


def report(timings: Sequence[Timing], *, title: str = "") -> str:
    """A Markdown table of median step times, peak step memory, and each config's ratio to the first."""
    base = timings[0]
    lines = [title] if title else []
    lines += [
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "| config | train step (ms, median) | ratio | inference (ms, median) | ratio "
        "| train peak memory (MiB) | ratio | inference peak memory (MiB) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | {t.train_median * 1e3:.1f} | {_ratio(t.train_median, base.train_median)} "
            f"| {t.infer_median * 1e3:.1f} | {_ratio(t.infer_median, base.infer_median)} "
            f"| {_mib(t.train_peak)} | {_ratio(t.train_peak, base.train_peak)} "
            f"| {_mib(t.infer_peak)} | {_ratio(t.infer_peak, base.infer_peak)} |"
        )
    return "\n".join(lines)
