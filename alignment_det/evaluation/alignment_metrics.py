"""Score-vs-localisation alignment metrics of a detector on a dataset (numpy + scipy only).

Everything here works on plain arrays, so it runs (and is tested) where neither torch nor
Detectron2 is installed; :class:`~alignment_det.evaluation.alignment_evaluator.AlignmentEvaluator`
feeds it from Detectron2's inference loop and ``tools/analyze_alignment.py`` from json files.

Inputs are per-image records (mappings) with numpy arrays, boxes XYXY in the same pixel frame:

* ``det_boxes (D, 4)``, ``det_scores (D,)``, ``det_classes (D,)`` int: the detector's output;
* ``gt_boxes (G, 4)``, ``gt_classes (G,)`` int, optional ``gt_crowd (G,)`` bool (COCO ``iscrowd``);
* optional ``nms``: the per-GT result of :func:`nms_misranking` for that image.

Definitions (the tests work each of them out by hand):

* **matching** at IoU ``t`` is COCO's: detections of a class in decreasing score (stable order)
  take the unmatched non-crowd ground truth of their class with the highest IoU ``>= t``; a
  detection that matches none but covers a crowd region of its class (intersection over the
  detection's area ``>= t``) is *ignored* (neither TP nor FP), as ``COCOeval`` does;
* **correlations** (Pearson, Spearman, Kendall tau-b) of score against IoU: ``all`` = every detection
  whose IoU with its best same-class ground truth is ``>= min_iou`` (default 0.1), IoU being that
  best IoU; ``tp50`` = the true positives at IoU 0.5, IoU being that of their matched ground truth;
* **mean IoU per score decile**: all detections sorted by score and cut into ten equal-count groups
  (group ``i`` holds sorted positions ``[floor(i n / 10), floor((i + 1) n / 10))``), IoU with the best
  same-class ground truth (0 when none); **mean score per IoU bin**: the same detections in the IoU
  bins ``[0, .1), ..., [.9, 1]``;
* **calibration** against "true positive at IoU t" (t = 0.5, 0.75), non-ignored detections in ten
  equal-width score bins ``[0, .1), ..., [.9, 1]``: ``ECE = sum_b n_b / N |acc_b - conf_b|``,
  ``MCE = max_b |acc_b - conf_b|`` over non-empty bins (Guo et al. 2017; Kuppers et al. 2020 for
  detection);
* **oLRP** (Oksuz et al., ECCV 2018; TPAMI 2021, "One Metric to Measure them All"), per class, at
  ``tau = 0.5``: ``LRP = (sum_TP (1 - IoU) / (1 - tau) + N_FP + N_FN) / (N_TP + N_FP + N_FN)`` of the
  detections above a score threshold; ``oLRP`` is its minimum over thresholds (the class-wise
  LRP-optimal threshold), with components at that threshold ``oLRP_Loc = mean_TP (1 - IoU)``,
  ``oLRP_FP = N_FP / (N_TP + N_FP)``, ``oLRP_FN = N_FN / N_GT``; ``moLRP`` and its components are
  means over the classes that have ground truth (undefined components, e.g. ``Loc`` without a TP,
  are left out of the mean, as in the authors' evaluation code). A threshold never separates tied
  scores, so the minimum is taken over the ends of tie groups (and "no detection", LRP = 1);
* **NMS misranking**: see :func:`nms_misranking`.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

__all__ = [
    "box_ioa",
    "box_iou",
    "best_same_class_iou",
    "calibration",
    "evaluate_alignment",
    "flat_metrics",
    "match_detections",
    "mean_by_bins",
    "mean_by_rank_groups",
    "nms_misranking",
    "optimal_lrp",
    "score_iou_correlations",
    "score_iou_pairs",
]

DEFAULT_MIN_IOU = 0.1
CALIBRATION_IOUS = (0.5, 0.75)
NUM_BINS = 10


# ----------------------------------------------------------------------------- geometry
# numpy twins of alignment_det.utils.boxes (torch): this module must import without torch.
# tests/test_alignment_metrics.py checks they agree.
def _as_boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return b


def _area(boxes: np.ndarray) -> np.ndarray:
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None)
    return wh[:, 0] * wh[:, 1]


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(a, b) -> np.ndarray:
    """IoU of every pair: (N, 4), (M, 4) XYXY -> (N, M); pairs with an empty union give 0."""
    a, b = _as_boxes(a), _as_boxes(b)
    inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_ioa(dets, regions) -> np.ndarray:
    """Intersection over the *detection's* area, (N, 4), (M, 4) -> (N, M): COCO's IoU with a crowd box."""
    a, b = _as_boxes(dets), _as_boxes(regions)
    inter = _intersection(a, b)
    area = _area(a)[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def _same_class_iou(det_boxes, det_classes, gt_boxes, gt_classes, keep_gt=None) -> np.ndarray:
    """(D, G) IoU, -1 where classes differ or the ground truth is not in ``keep_gt``."""
    iou = box_iou(det_boxes, gt_boxes)
    valid = np.asarray(det_classes).reshape(-1, 1) == np.asarray(gt_classes).reshape(1, -1)
    if keep_gt is not None:
        valid &= np.asarray(keep_gt, dtype=bool).reshape(1, -1)
    return np.where(valid, iou, -1.0)


def best_same_class_iou(det_boxes, det_classes, gt_boxes, gt_classes, gt_crowd=None) -> np.ndarray:
    """(D,) IoU of each detection with its best non-crowd ground truth of the same class (0 if none)."""
    d = len(np.asarray(det_classes).reshape(-1))
    if d == 0 or len(np.asarray(gt_classes).reshape(-1)) == 0:
        return np.zeros(d)
    keep = None if gt_crowd is None else ~np.asarray(gt_crowd, dtype=bool)
    return np.clip(_same_class_iou(det_boxes, det_classes, gt_boxes, gt_classes, keep).max(axis=1), 0.0, None)


# ----------------------------------------------------------------------------- matching
def match_detections(
    det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_crowd=None, *, iou_thresh: float = 0.5
):
    """COCO-style greedy matching of one image at IoU ``iou_thresh`` (module docstring).

    Returns:
        ``tp (D,) bool``, ``matched_iou (D,)`` (IoU with the matched ground truth, 0 otherwise),
        ``matched_gt (D,) int`` (-1 when unmatched), ``ignored (D,) bool`` (on a crowd region).
    """
    det_boxes, gt_boxes = _as_boxes(det_boxes), _as_boxes(gt_boxes)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    det_classes = np.asarray(det_classes).reshape(-1)
    gt_classes = np.asarray(gt_classes).reshape(-1)
    D, G = len(det_scores), len(gt_classes)
    crowd = np.zeros(G, dtype=bool) if gt_crowd is None else np.asarray(gt_crowd, dtype=bool).reshape(-1)
    tp = np.zeros(D, dtype=bool)
    ignored = np.zeros(D, dtype=bool)
    matched_iou = np.zeros(D)
    matched_gt = np.full(D, -1, dtype=np.int64)
    if D == 0 or G == 0:
        return tp, matched_iou, matched_gt, ignored
    iou = _same_class_iou(det_boxes, det_classes, gt_boxes, gt_classes, ~crowd)
    ioa = None
    if crowd.any():
        ioa = np.where(det_classes[:, None] == gt_classes[None, crowd], box_ioa(det_boxes, gt_boxes[crowd]), -1.0)
    taken = np.zeros(G, dtype=bool)
    # COCOeval sorts by score with a stable mergesort; the same order here gives the same matches.
    for d in np.argsort(-det_scores, kind="mergesort"):
        cand = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_thresh:
            tp[d], matched_iou[d], matched_gt[d] = True, cand[g], g
            taken[g] = True
        elif ioa is not None and ioa[d].max() >= iou_thresh:
            ignored[d] = True
    return tp, matched_iou, matched_gt, ignored


# ----------------------------------------------------------------------------- statistics
def score_iou_correlations(scores, ious) -> Dict[str, float]:
    """Pearson, Spearman and Kendall (tau-b) correlation of ``scores`` with ``ious`` (paired, (N,)).

    NaN where undefined: fewer than 2 pairs, or one side constant. ``n`` is the number of pairs.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    u = np.asarray(ious, dtype=np.float64).reshape(-1)
    out = {"pearson": math.nan, "spearman": math.nan, "kendall": math.nan, "n": float(len(s))}
    if len(s) < 2 or np.ptp(s) == 0 or np.ptp(u) == 0:
        return out
    out["pearson"] = float(stats.pearsonr(s, u)[0])
    out["spearman"] = float(stats.spearmanr(s, u)[0])
    out["kendall"] = float(stats.kendalltau(s, u)[0])  # tau-b: corrected for ties
    return out


def mean_by_rank_groups(keys, values, num_groups: int = NUM_BINS) -> Dict[str, List[float]]:
    """Sort by ``keys`` (stable) and cut into ``num_groups`` equal-count groups; group ``i`` holds sorted
    positions ``[floor(i n / g), floor((i + 1) n / g))``.

    Returns lists of length ``num_groups``: ``mean`` of ``values``, ``key_min`` / ``key_max`` and
    ``count`` per group (NaN for the statistics of an empty group).
    """
    k = np.asarray(keys, dtype=np.float64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(k, kind="mergesort")
    n = len(k)
    out = {"mean": [], "key_min": [], "key_max": [], "count": []}
    for i in range(num_groups):
        sel = order[(i * n) // num_groups : ((i + 1) * n) // num_groups]
        out["count"].append(float(len(sel)))
        out["mean"].append(float(v[sel].mean()) if len(sel) else math.nan)
        out["key_min"].append(float(k[sel].min()) if len(sel) else math.nan)
        out["key_max"].append(float(k[sel].max()) if len(sel) else math.nan)
    return out


def _bin_index(x: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width bins of [0, 1]: ``[0, 1/b), ..., [(b-1)/b, 1]`` (1 in the last bin); outside values clipped."""
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) * num_bins), 0, num_bins - 1).astype(np.int64)


def mean_by_bins(keys, values, num_bins: int = NUM_BINS) -> Dict[str, List[float]]:
    """Mean of ``values`` per equal-width bin of ``keys`` in [0, 1]: ``edges`` (b + 1), ``mean`` and ``count`` (b)."""
    k = np.asarray(keys, dtype=np.float64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    idx = _bin_index(k, num_bins)
    count = np.bincount(idx, minlength=num_bins).astype(np.float64)
    total = np.bincount(idx, weights=v, minlength=num_bins)
    mean = np.divide(total, count, out=np.full(num_bins, np.nan), where=count > 0)
    return {"edges": np.linspace(0, 1, num_bins + 1).tolist(), "mean": mean.tolist(), "count": count.tolist()}


def calibration(scores, is_tp, num_bins: int = NUM_BINS) -> Dict[str, object]:
    """Expected / maximum calibration error of ``scores`` as probabilities of ``is_tp`` (module docstring).

    Returns ``ece``, ``mce`` (NaN without detections) and the reliability-diagram bins: ``edges``
    (b + 1), ``confidence`` (mean score), ``accuracy`` (TP rate) and ``count`` per bin (b).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_tp, dtype=np.float64).reshape(-1)
    conf = mean_by_bins(s, s, num_bins)
    acc = mean_by_bins(s, y, num_bins)
    count = np.asarray(conf["count"])
    gap = np.abs(np.asarray(acc["mean"]) - np.asarray(conf["mean"]))
    nonempty = count > 0
    n = count.sum()
    ece = float((count[nonempty] / n * gap[nonempty]).sum()) if n > 0 else math.nan
    mce = float(gap[nonempty].max()) if n > 0 else math.nan
    return {"ece": ece, "mce": mce, "edges": conf["edges"], "confidence": conf["mean"], "accuracy": acc["mean"],
            "count": conf["count"]}


def optimal_lrp(scores, is_tp, ious, num_gt: int, *, tau: float = 0.5) -> Optional[Dict[str, float]]:
    """oLRP of one class over a dataset (module docstring); None when the class has no ground truth.

    Args:
        scores, is_tp, ious: (N,) the class's non-ignored detections over all images, their TP flag
            at IoU ``tau`` and the IoU with their matched ground truth.
        num_gt: non-crowd ground truths of the class.

    Returns:
        ``olrp``, ``loc``, ``fp``, ``fn``, ``threshold`` (the LRP-optimal score threshold, NaN when
        the optimum keeps no detection) and ``num_tp`` / ``num_fp`` / ``num_fn`` at the optimum.
    """
    if num_gt <= 0:
        return None
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s = s[order]
    tp = np.asarray(is_tp, dtype=bool).reshape(-1)[order]
    loc_err = np.where(tp, 1.0 - np.asarray(ious, dtype=np.float64).reshape(-1)[order], 0.0)
    # Candidates: keep the top n detections, n = 0 or the end of a tie group.
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) + 1 if len(s) else np.zeros(0, dtype=np.int64)
    n = np.r_[0, ends]
    ntp = np.r_[0, np.cumsum(tp)][n].astype(np.float64)
    loc = np.r_[0.0, np.cumsum(loc_err)][n]
    nfp = n - ntp
    nfn = num_gt - ntp
    lrp = (loc / (1.0 - tau) + nfp + nfn) / (ntp + nfp + nfn)
    best = int(np.argmin(lrp))  # the first minimum: the highest threshold among equal errors
    k = int(n[best])
    return {
        "olrp": float(lrp[best]),
        "loc": float(loc[best] / ntp[best]) if ntp[best] > 0 else math.nan,
        "fp": float(nfp[best] / k) if k > 0 else math.nan,
        "fn": float(nfn[best] / num_gt),
        "threshold": float(s[k - 1]) if k > 0 else math.nan,
        "num_tp": float(ntp[best]),
        "num_fp": float(nfp[best]),
        "num_fn": float(nfn[best]),
    }


# ----------------------------------------------------------------------------- NMS
def nms_misranking(
    cand_boxes, cand_scores, cand_classes, kept, gt_boxes, gt_classes, gt_crowd=None, *, min_iou: float = 0.5
) -> Dict[str, np.ndarray]:
    """Which ground truths lost their best-localised candidate to NMS, in one image.

    For each non-crowd ground truth ``g``, ``b*`` is the candidate (box entering NMS) of ``g``'s class
    with the highest IoU with ``g``. ``g`` is *considered* when that IoU is ``>= min_iou`` (it could
    be detected). It is *misranked* when ``b*`` was suppressed and every surviving candidate of its
    class localises ``g`` worse: NMS kept a higher-scored box of lower IoU in its place. The IoU
    lost is ``IoU(b*, g) - max_{kept k} IoU(k, g)``.

    Args:
        cand_boxes (C, 4), cand_scores (C,), cand_classes (C,): the candidates before NMS (scores
            are not needed for the definition and only checked for shape).
        kept: indices (or a (C,) bool mask) of the candidates NMS kept.
        gt_boxes (G, 4), gt_classes (G,), gt_crowd (G,) bool or None.
        min_iou: IoU a ground truth's best candidate needs for the ground truth to count.

    Returns:
        per ground truth (G,): ``best_iou``, ``considered`` (bool), ``misranked`` (bool), ``iou_lost``
        (0 unless misranked). Crowd ground truths are never considered.
    """
    cand_boxes = _as_boxes(cand_boxes)
    C = len(cand_boxes)
    if len(np.asarray(cand_scores).reshape(-1)) != C or len(np.asarray(cand_classes).reshape(-1)) != C:
        raise ValueError("nms_misranking: cand_boxes, cand_scores and cand_classes must have the same length")
    kept = np.asarray(kept)
    kept_mask = kept.astype(bool) if kept.dtype == bool else np.isin(np.arange(C), kept.reshape(-1))
    if kept_mask.shape != (C,):
        raise ValueError(f"nms_misranking: a kept mask must have one entry per candidate ({C}), got {kept_mask.shape}")
    G = len(np.asarray(gt_classes).reshape(-1))
    crowd = np.zeros(G, dtype=bool) if gt_crowd is None else np.asarray(gt_crowd, dtype=bool).reshape(-1)
    out = {"best_iou": np.zeros(G), "considered": np.zeros(G, dtype=bool), "misranked": np.zeros(G, dtype=bool),
           "iou_lost": np.zeros(G)}
    if C == 0 or G == 0:
        return out
    iou = _same_class_iou(cand_boxes, cand_classes, gt_boxes, gt_classes)  # (C, G), -1 across classes
    best = iou.max(axis=0)
    best_kept = np.where(kept_mask[:, None], iou, -1.0).max(axis=0)
    considered = (best >= min_iou) & ~crowd
    misranked = considered & (best_kept < best)
    out["best_iou"] = np.clip(best, 0.0, None)
    out["considered"] = considered
    out["misranked"] = misranked
    out["iou_lost"] = np.where(misranked, best - np.clip(best_kept, 0.0, None), 0.0)
    return out


# ----------------------------------------------------------------------------- dataset level
def _arrays(record: Mapping) -> Dict[str, np.ndarray]:
    det_boxes = _as_boxes(record.get("det_boxes", np.zeros((0, 4))))
    gt_boxes = _as_boxes(record.get("gt_boxes", np.zeros((0, 4))))
    out = {
        "det_boxes": det_boxes,
        "det_scores": np.asarray(record.get("det_scores", []), dtype=np.float64).reshape(-1),
        "det_classes": np.asarray(record.get("det_classes", []), dtype=np.int64).reshape(-1),
        "gt_boxes": gt_boxes,
        "gt_classes": np.asarray(record.get("gt_classes", []), dtype=np.int64).reshape(-1),
    }
    crowd = record.get("gt_crowd")
    out["gt_crowd"] = np.zeros(len(gt_boxes), dtype=bool) if crowd is None else np.asarray(crowd, dtype=bool).reshape(-1)
    if not (len(out["det_boxes"]) == len(out["det_scores"]) == len(out["det_classes"])):
        raise ValueError(f"image {record.get('image_id')}: det_boxes, det_scores, det_classes differ in length")
    if not (len(gt_boxes) == len(out["gt_classes"]) == len(out["gt_crowd"])):
        raise ValueError(f"image {record.get('image_id')}: gt_boxes, gt_classes, gt_crowd differ in length")
    if not np.isfinite(out["det_scores"]).all() or not np.isfinite(det_boxes).all():
        raise ValueError(
            f"image {record.get('image_id')}: detections with NaN/inf boxes or scores; the model diverged "
            "(check the training loss) or its output was not postprocessed"
        )
    return out


def score_iou_pairs(images: Iterable[Mapping]) -> Dict[str, np.ndarray]:
    """All detections of a dataset with the IoU of their best same-class non-crowd ground truth:
    ``scores``, ``ious``, ``classes`` (N,) each (for the score-vs-IoU plots)."""
    scores, ious, classes = [], [], []
    for rec in images:
        a = _arrays(rec)
        scores.append(a["det_scores"])
        classes.append(a["det_classes"])
        ious.append(best_same_class_iou(a["det_boxes"], a["det_classes"], a["gt_boxes"], a["gt_classes"], a["gt_crowd"]))
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt)  # noqa: E731
    return {"scores": cat(scores, np.float64), "ious": cat(ious, np.float64), "classes": cat(classes, np.int64)}


def evaluate_alignment(
    images: Sequence[Mapping],
    *,
    min_iou: float = DEFAULT_MIN_IOU,
    tp_iou: float = 0.5,
    calibration_ious: Sequence[float] = CALIBRATION_IOUS,
    num_bins: int = NUM_BINS,
    lrp_tau: float = 0.5,
) -> Dict[str, object]:
    """Every alignment metric of a dataset (module docstring) as a nested, json-serialisable dict.

    Args:
        images: per-image records (module docstring); every image of the dataset, also those
            without detections or without ground truth.
        min_iou: lower IoU bound of the "all" correlation population.
        tp_iou: IoU of the "tp" correlation population (0.5 -> keys ``*_tp50``).
        calibration_ious: IoUs ``t`` of the calibration targets.
        num_bins: score deciles / IoU bins / reliability bins.
        lrp_tau: TP IoU of LRP (0.5, as the paper).
    """
    recs = [_arrays(r) for r in images]
    thresholds = sorted({float(tp_iou), float(lrp_tau), *map(float, calibration_ious)})
    # One matching per image and threshold, reused by every metric that needs it.
    matches = {t: [match_detections(r["det_boxes"], r["det_scores"], r["det_classes"], r["gt_boxes"],
                                    r["gt_classes"], r["gt_crowd"], iou_thresh=t) for r in recs]
               for t in thresholds}
    cat = lambda xs, dt=np.float64: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt)  # noqa: E731
    scores = cat([r["det_scores"] for r in recs])
    classes = cat([r["det_classes"] for r in recs], np.int64)
    best_iou = cat([best_same_class_iou(r["det_boxes"], r["det_classes"], r["gt_boxes"], r["gt_classes"], r["gt_crowd"])
                    for r in recs])

    report: Dict[str, object] = OrderedDict()
    report["num_images"] = len(recs)
    report["num_detections"] = int(len(scores))
    report["num_gt"] = int(sum(int((~r["gt_crowd"]).sum()) for r in recs))

    tp_t, tp_iou_t, _, ign_t = (cat([m[k] for m in matches[float(tp_iou)]], dt) for k, dt in
                                ((0, bool), (1, np.float64), (2, np.int64), (3, bool)))
    sel_all = best_iou >= min_iou
    report["correlation"] = OrderedDict(
        all=score_iou_correlations(scores[sel_all], best_iou[sel_all]),
        tp=score_iou_correlations(scores[tp_t], tp_iou_t[tp_t]),
    )
    report["correlation_params"] = {"min_iou": float(min_iou), "tp_iou": float(tp_iou)}
    report["iou_by_score_decile"] = mean_by_rank_groups(scores, best_iou, num_bins)
    report["score_by_iou_bin"] = mean_by_bins(best_iou, scores, num_bins)

    report["calibration"] = OrderedDict()
    for t in calibration_ious:
        tp_c = cat([m[0] for m in matches[float(t)]], bool)
        ign_c = cat([m[3] for m in matches[float(t)]], bool)
        report["calibration"][f"{float(t):g}"] = calibration(scores[~ign_c], tp_c[~ign_c], num_bins)

    tp_l = cat([m[0] for m in matches[float(lrp_tau)]], bool)
    iou_l = cat([m[1] for m in matches[float(lrp_tau)]])
    ign_l = cat([m[3] for m in matches[float(lrp_tau)]], bool)
    gt_classes = cat([r["gt_classes"][~r["gt_crowd"]] for r in recs], np.int64)
    per_class = OrderedDict()
    for c in sorted(set(gt_classes.tolist()) | set(classes.tolist())):
        sel = (classes == c) & ~ign_l
        res = optimal_lrp(scores[sel], tp_l[sel], iou_l[sel], int((gt_classes == c).sum()), tau=lrp_tau)
        if res is not None:  # classes without ground truth are left out, as in the LRP code
            per_class[str(c)] = res
    mean = lambda key: float(np.nanmean([v[key] for v in per_class.values()])) if per_class and not all(  # noqa: E731
        math.isnan(v[key]) for v in per_class.values()) else math.nan
    report["lrp"] = OrderedDict(olrp=mean("olrp"), olrp_loc=mean("loc"), olrp_fp=mean("fp"), olrp_fn=mean("fn"),
                                tau=float(lrp_tau), per_class=per_class)

    nms = [r for r in images if r.get("nms") is not None]
    if nms:
        considered = cat([np.asarray(r["nms"]["considered"], dtype=bool) for r in nms], bool)
        misranked = cat([np.asarray(r["nms"]["misranked"], dtype=bool) for r in nms], bool)
        lost = cat([np.asarray(r["nms"]["iou_lost"], dtype=np.float64) for r in nms])
        report["nms_misranking"] = OrderedDict(
            share=float(misranked.sum() / considered.sum()) if considered.any() else math.nan,
            mean_iou_lost=float(lost[misranked].mean()) if misranked.any() else 0.0,
            num_gt_considered=int(considered.sum()),
            num_misranked=int(misranked.sum()),
            num_images=len(nms),
        )
    return report


def flat_metrics(report: Mapping) -> "OrderedDict[str, float]":
    """The scalars of :func:`evaluate_alignment`'s report under short flat names (float values), for
    Detectron2's EventStorage / metrics.json: correlations, ECE/MCE, moLRP and components, NMS
    misranking, the score-decile and IoU-bin means (``iou_by_score_decile-i``, ``score_by_iou_bin-i``)
    and ``tide_*`` when present."""
    out: "OrderedDict[str, float]" = OrderedDict()
    tp_name = f"tp{int(round(report['correlation_params']['tp_iou'] * 100))}"
    for pop, name in (("all", "all"), ("tp", tp_name)):
        for k in ("pearson", "spearman", "kendall"):
            out[f"{k}_{name}"] = float(report["correlation"][pop][k])
        out[f"num_{name}"] = float(report["correlation"][pop]["n"])
    for t, cal in report["calibration"].items():
        tag = int(round(float(t) * 100))
        out[f"ece{tag}"] = float(cal["ece"])
        out[f"mce{tag}"] = float(cal["mce"])
    lrp = report["lrp"]
    for k in ("olrp", "olrp_loc", "olrp_fp", "olrp_fn"):
        out[k] = float(lrp[k])
    if "nms_misranking" in report:
        nms = report["nms_misranking"]
        out["nms_misranked_share"] = float(nms["share"])
        out["nms_mean_iou_lost"] = float(nms["mean_iou_lost"])
        out["nms_num_gt_considered"] = float(nms["num_gt_considered"])
    # "-" in a name: Detectron2's print_csv_format leaves these per-bin values out of its summary line.
    for i, v in enumerate(report["iou_by_score_decile"]["mean"]):
        out[f"iou_by_score_decile-{i}"] = float(v)
    for i, v in enumerate(report["score_by_iou_bin"]["mean"]):
        out[f"score_by_iou_bin-{i}"] = float(v)
    for k, v in report.get("tide", {}).items():
        out[f"tide_{k}"] = float(v)
    out["num_detections"] = float(report["num_detections"])
    out["num_gt"] = float(report["num_gt"])
    return out
