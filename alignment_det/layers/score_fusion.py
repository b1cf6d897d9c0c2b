"""Score fusion of RetinaNet-Conf at inference (arXiv 2011.10465; docs/methods.md#retinanet-conf-score-fusion).

Before thresholding, top-k and NMS, every candidate is ranked by

    s = s_cls^(1 - a) · s_obj^a          (a = 0.4 by default; a = 0 -> plain RetinaNet)

where ``s_cls = σ(class logits)`` (R_l, K) and ``s_obj = σ(confidence logit)`` (R_l, 1),
the latter shared by the K classes of an anchor.

Fusion happens on EVERY pyramid level. The official ``_get_bboxes_single`` multiplies by
``s_obj^a`` only inside its "more than nms_pre anchors" branch, so small levels (P7 at
1024x608, also P6 on smaller images) were ranked by ``s_cls^0.6`` alone -- a bug that
this implementation deliberately does not reproduce.

Torch only: no Detectron2, no torchvision.
"""
import torch

__all__ = ["fuse_scores", "fuse_logits", "DEFAULT_FUSION_ALPHA"]

DEFAULT_FUSION_ALPHA = 0.4  # model.fusion_alpha; paper Tables 3/4/6 and the code


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"fusion alpha must be a number in [0, 1], got {alpha!r}") from None
    if isinstance(alpha, bool) or not (0.0 <= a <= 1.0):  # NaN fails the comparison too
        raise ValueError(
            f"fusion alpha must be in [0, 1] (0 = classification score only, 1 = object confidence only; "
            f"the paper uses 0.4), got {alpha!r}"
        )
    return a


def fuse_scores(cls_scores: torch.Tensor, obj_scores: torch.Tensor, alpha: float = DEFAULT_FUSION_ALPHA) -> torch.Tensor:
    """``s = cls_scores^(1 - alpha) * obj_scores^alpha``, probabilities in, probabilities out.

    Args:
        cls_scores: (..., K) class probabilities, e.g. (R_l, K) for one level of one image.
        obj_scores: (..., 1) or (...) object-confidence probabilities, one per anchor,
            broadcast over the K classes.
        alpha: exponent on the object confidence, in [0, 1].

    Returns:
        Fused scores with the shape of ``cls_scores``. For ``alpha == 0`` this is
        ``cls_scores`` itself (the same tensor object).
    """
    a = _check_alpha(alpha)
    if obj_scores.dim() == cls_scores.dim() - 1:
        obj_scores = obj_scores.unsqueeze(-1)
    if obj_scores.dim() != cls_scores.dim() or obj_scores.shape[-1] != 1:
        raise ValueError(
            "obj_scores must have one value per anchor, shape (..., 1) or (...), for cls_scores of shape "
            f"(..., K) = {tuple(cls_scores.shape)}; got {tuple(obj_scores.shape)}"
        )
    try:
        out_shape = torch.broadcast_shapes(cls_scores.shape, obj_scores.shape)
    except RuntimeError:
        out_shape = None
    if out_shape != cls_scores.shape:
        raise ValueError(
            f"obj_scores {tuple(obj_scores.shape)} does not match the anchors of cls_scores {tuple(cls_scores.shape)}"
        )
    if a == 0.0:
        # a = 0 must reproduce RetinaNet's detections exactly (docs/methods.md#retinanet-conf-score-fusion). cls^1 * obj^0
        # is mathematically cls, but computing it would still promote dtype (fp16 cls with fp32 obj),
        # allocate, and depend on pow's special cases (obj^0 for NaN/inf obj); returning the input
        # untouched guarantees bitwise-identical scores and therefore identical top-k/NMS.
        return cls_scores
    return cls_scores.pow(1.0 - a) * obj_scores.pow(a)


def fuse_logits(cls_logits: torch.Tensor, obj_logits: torch.Tensor, alpha: float = DEFAULT_FUSION_ALPHA) -> torch.Tensor:
    """:func:`fuse_scores` on ``sigmoid`` of the logits: (..., K) and (..., 1)/(...) -> (..., K).

    With ``alpha == 0`` the result is ``cls_logits.sigmoid()``, the score RetinaNet ranks by.
    """
    return fuse_scores(torch.sigmoid(cls_logits), torch.sigmoid(obj_logits), alpha)
