"""Reading Detectron2's ``metrics.json``: one home for the tools that plot or tabulate runs
(``tools/plot_metrics.py``, ``benchmarks/accuracy.py``).

Every line is a JSON object with ``iteration``. Training rows carry ``lr`` (Detectron2 logs it every
step); evaluation results (``bbox/...`` / ``alignment/...`` keys) share the row of the iteration they
follow or are lines of their own, stamped at the iteration of the checkpoint evaluated (training's
last evaluation and ``--eval-only`` on ``model_final.pth`` alike). A resumed run appends training
rows whose iteration goes back: from that row on the later values replace the earlier ones (every
point of the earlier segment at or after that iteration is dropped), so each series is the one of
the run that continued. An evaluation-only line never starts a segment (``--eval-only`` of an
earlier checkpoint, appended later, is no restart). Two lines of the same iteration merge, the
later value winning.
"""
import json
import math
import os
from typing import Dict, List, Tuple

__all__ = ["Series", "metrics_path", "read_metric_rows", "read_metrics"]

#: key -> (iterations, values), sorted by iteration
Series = Dict[str, Tuple[List[int], List[float]]]


def metrics_path(path: str) -> str:
    """``path`` if it is a file, else ``path/metrics.json``; error when missing."""
    candidate = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
    if not os.path.isfile(candidate):
        raise FileNotFoundError(f"{path!r}: no metrics.json there (give the file or the run's output folder)")
    return candidate


def _is_training_row(row: dict) -> bool:
    """A row written by a training step (Detectron2's LRScheduler hook logs ``lr`` every step)."""
    return "lr" in row


def read_metric_rows(path: str) -> List[dict]:
    """The lines of one ``metrics.json`` (the file or its folder) as written, one dict each, in
    file order: nothing merged or dropped (:func:`read_metrics` gives the series a resumed run
    continued)."""
    path = metrics_path(path)
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from None
    return rows


def read_metrics(path: str, *, finite_only: bool = True) -> Series:
    """``{key: (iterations, values)}`` of one ``metrics.json`` (the file or its folder).

    Non-numeric fields are skipped; with ``finite_only`` non-finite values (an AP of ``NaN`` when
    nothing was detected) are left out too, as a plot wants; a table keeps them (``False``) so that a
    NaN final AP is reported as such rather than replaced by an earlier evaluation.
    """
    points: Dict[str, Dict[int, float]] = {}
    last_iter = -1
    for row in read_metric_rows(path):
        if "iteration" not in row:
            continue
        it = int(row["iteration"])
        if it < last_iter and _is_training_row(row):  # a resumed run starts again here: later values win
            for series in points.values():
                for stale in [i for i in series if i >= it]:
                    del series[stale]
        last_iter = max(last_iter, it) if not _is_training_row(row) else it
        for key, value in row.items():
            if key == "iteration" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            points.setdefault(key, {})[it] = float(value)
    out: Series = {}
    for key, series in points.items():
        its = sorted(i for i, v in series.items() if math.isfinite(v) or not finite_only)
        if its:
            out[key] = (its, [series[i] for i in its])
    return out
