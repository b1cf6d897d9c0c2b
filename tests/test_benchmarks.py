"""benchmarks/: per-step peak memory (CPU resident memory, reset per step) and the --boxes sweep."""
import json
import math
import os
import platform
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402

from _cli import REPO, instant_config  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import compare  # noqa: E402
from harness import PeakMemory, StepTimer, _cpu_peak_supported  # noqa: E402

MiB = 2**20


@pytest.mark.skipif(platform.system() != "Linux" or not _cpu_peak_supported(), reason="needs /proc/self/clear_refs (Linux)")
def test_cpu_peak_memory_is_per_block():
    with PeakMemory("cpu") as big:
        x = torch.ones(64 * MiB)  # 256 MiB, written so that it is resident
        del x
    with PeakMemory("cpu") as small:
        y = torch.ones(16 * MiB)  # 64 MiB
        del y
    with PeakMemory("cpu") as none:
        pass
    # each block sees its own peak: the 256 MiB of the first are not carried into the next ones
    assert 250 * MiB <= big.bytes <= 300 * MiB, big.bytes / MiB
    assert 60 * MiB <= small.bytes <= 100 * MiB, small.bytes / MiB
    assert none.bytes < 20 * MiB, none.bytes / MiB


def test_box_sweep_writes_report_json_and_plot(tmp_path, capsys):
    cfg = instant_config("fcos_instant_test.py")
    png, js = tmp_path / "sweep.png", tmp_path / "sweep.json"
    compare.main([cfg, cfg, "--boxes", "2", "20", "--size", "64", "80", "--batch", "1", "--iters", "1", "--warmup", "0",
                  "--modes", "train", "--plot", str(png), "--json", str(js)])
    out = capsys.readouterr().out
    assert out.count("## ") == 2 and "train peak memory (MiB)" in out
    rows = json.loads(js.read_text())["rows"]
    assert sorted((r["boxes"], r["config"]) for r in rows) == [(2, "fcos_instant_test.py")] * 2 + [(20, "fcos_instant_test.py")] * 2
    assert all(len(r["train_s"]) == 1 and r["train_s"][0] > 0 and r["infer_s"] == [] for r in rows)
    assert all(math.isnan(r["infer_median_s"]) and r["train_median_s"] == r["train_s"][0] for r in rows)
    if _cpu_peak_supported():
        assert all(r["train_peak_bytes"] > 0 for r in rows)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 1000 and im.size[1] > 300


def test_plot_needs_training_steps():
    with pytest.raises(SystemExit):
        compare.main(["a.py", "b.py", "--modes", "infer", "--plot", "x.png"])


class _FakeEvent:
    """Stands in for ``torch.cuda.Event`` on a machine without CUDA: the record order is kept and
    ``elapsed_time`` says 250 ms, which only an event-based timer can report."""

    log = []

    def __init__(self, enable_timing=False):
        assert enable_timing, "timing events need enable_timing=True"

    def record(self):
        self.log.append(("record", self))

    def synchronize(self):
        self.log.append(("synchronize", self))

    def elapsed_time(self, end):
        return 250.0


def test_step_timer_reads_cuda_events_on_cuda(monkeypatch):
    _FakeEvent.log = []
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: _FakeEvent.log.append(("device sync", None)))
    with StepTimer("cuda") as t:
        pass
    assert t.seconds == 0.25
    kinds = [k for k, _ in _FakeEvent.log]
    # the device is drained before the start event, and the end event is waited for before reading
    assert kinds == ["device sync", "record", "record", "synchronize"]
    assert _FakeEvent.log[1][1] is not _FakeEvent.log[2][1] and _FakeEvent.log[3][1] is _FakeEvent.log[2][1]
    with StepTimer("cpu") as cpu:
        pass
    assert 0 <= cpu.seconds < 0.25
