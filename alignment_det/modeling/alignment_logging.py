"""The training-time alignment signal every method logs: ``align/score_iou_corr``.

Each step, a method passes the positives of its loss (the anchors / locations it trains towards a
ground truth) with two numbers per positive: the score it would rank that prediction by at
inference, for the positive's ground-truth class, and the IoU of the positive's predicted box with
that ground truth. Both already exist in every loss, so the signal costs two sorts. Their Spearman
correlation goes to Detectron2's EventStorage (``metrics.json``, TensorBoard): close to 1 means the
classifier ranks the positives as the regressor localises them, which is what every method here is
after. Under DDP the value is each rank's own (only rank 0's is written).

HCRAL (and any new method) calls :func:`log_score_iou_correlation` from its ``losses``.
"""
from typing import Optional

from torch import Tensor

from alignment_det.utils.rank_correlation import spearman_correlation

from .events import put_scalars

__all__ = ["SCORE_IOU_CORR_KEY", "log_score_iou_correlation"]

#: EventStorage name of the signal.
SCORE_IOU_CORR_KEY = "align/score_iou_corr"


def log_score_iou_correlation(scores: Tensor, ious: Tensor) -> Optional[float]:
    """Log Spearman's rho between the positives' scores and IoUs as ``align/score_iou_corr``.

    Args:
        scores: (P,) for every positive of the step (all images of the batch), the score the method
            ranks its prediction by at inference, for the positive's ground-truth class (e.g.
            ``sigmoid(logit)``, RetinaNetConf's fused ``s_cls^(1-a) s_obj^a``, DATE's o2o probability).
        ious: (P,) IoU of each positive's predicted (decoded) box with its ground truth.

    Returns:
        the logged value, or None when nothing is logged: fewer than 2 positives with finite values,
        or all scores (or all IoUs) equal. Outside a trainer (no EventStorage) nothing is logged
        either, but the value is still returned. No gradient is taken.
    """
    rho = spearman_correlation(scores.detach().reshape(-1), ious.detach().reshape(-1))
    if rho is None:
        return None
    value = float(rho)
    put_scalars(**{SCORE_IOU_CORR_KEY: value})
    return value
