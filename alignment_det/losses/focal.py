"""Sigmoid focal loss on plain tensors.

Same formula as ``fvcore.nn.sigmoid_focal_loss`` (which Detectron2's RetinaNet/FCOS
call); kept here so the pure tensor layer needs torch alone. The default alpha is the
0.25 every detector here uses (fvcore's own default is -1, i.e. no alpha term).
"""
import warnings

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """FL(p_t) = -alpha_t * (1 - p_t)^gamma * log(p_t), elementwise on logits.

    Args:
        inputs: logits, any shape.
        targets: same shape, in [0, 1].
        alpha: weight of positives in (0, 1); a negative value disables the alpha term.
        reduction: "none" | "mean" | "sum".
    """
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction != "none":
        raise ValueError("reduction must be 'none', 'mean' or 'sum', got '" + reduction + "'")
    return loss


def focal_targets(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-class targets of a sigmoid classifier: ``y[..., k] = 1[label == k]`` for k < K.

    Args:
        labels: (...) int64 in [-1, K]: a class in [0, K), ``K = num_classes`` for background, -1 for
            an ignored prior (background and ignored rows are all zeros; the loss masks the ignored).
        num_classes: K.
        dtype: of the result (the logits' dtype).

    Returns:
        (..., K) one-hot rows, as ``F.one_hot(labels, K + 1)[..., :K]`` with the ignored set to background.
    """
    labels = torch.where(labels < 0, torch.full_like(labels, num_classes), labels)
    return F.one_hot(labels, num_classes + 1)[..., :num_classes].to(dtype)


# TorchScript-compiled, as fvcore's ``sigmoid_focal_loss_jit`` that ATSS and RetinaNet call: the
# scripted backward rounds differently from eager autograd in the last bits, and the detectors that
# used fvcore's keep its gradients bit for bit.
with warnings.catch_warnings():  # torch 2.x deprecates jit.script; fvcore scripts its twin the same way
    warnings.simplefilter("ignore", FutureWarning)
    sigmoid_focal_loss_jit = torch.jit.script(sigmoid_focal_loss)
