"""RetinaNet-Conf object-confidence targets and loss (docs/methods.md#retinanet-conf-object-confidence), by hand."""
import math

import pytest
import torch

from alignment_det.losses.objectness import objectness_loss
from alignment_det.utils.boxes import decode_boxes, iou_targets

LN2 = math.log(2.0)
LN3 = math.log(3.0)


# ----------------------------------------------------------------------------- iou_targets
def test_iou_targets_by_hand():
    pred = torch.tensor(
        [
            [0.0, 0.0, 2.0, 2.0],  # vs [1,0,3,2]: inter 1x2 = 2, union 4 + 4 - 2 = 6 -> 1/3
            [0.0, 0.0, 2.0, 2.0],  # identical -> 1
            [0.0, 0.0, 1.0, 1.0],  # disjoint -> 0
            [0.0, 0.0, 4.0, 4.0],  # vs [0,0,4,2]: inter 8, union 16 + 8 - 8 = 16 -> 0.5
        ]
    )
    gt = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 4.0, 2.0]])
    assert torch.allclose(iou_targets(pred, gt), torch.tensor([1 / 3, 1.0, 0.0, 0.5]))


def test_iou_targets_degenerate_and_nonfinite_boxes_give_zero():
    pred = torch.tensor(
        [
            [1.0, 1.0, 1.0, 3.0],  # zero width inside the GT: inter 0 -> 0
            [1.0, 1.0, 1.0, 1.0],  # point vs point: union 0 -> 0, not NaN
            [2.0, 2.0, 0.0, 0.0],  # inverted box on top of the GT: clamped extents -> 0
            [float("nan"), 0.0, 2.0, 2.0],  # diverged regression -> 0, not NaN
        ]
    )
    gt = torch.tensor([[0.0, 0.0, 2.0, 4.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    t = iou_targets(pred, gt)
    assert torch.isfinite(t).all()
    assert torch.equal(t, torch.zeros(4))


def test_iou_targets_carry_no_gradient_and_lie_in_unit_interval():
    torch.manual_seed(0)
    anchors = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(50, 1)
    deltas = (0.5 * torch.randn(50, 4)).requires_grad_(True)
    pred = decode_boxes(deltas, anchors)
    assert pred.requires_grad
    gt = torch.tensor([[1.0, 0.0, 5.0, 3.0]]).repeat(50, 1)
    t = iou_targets(pred, gt)
    assert not t.requires_grad and t.grad_fn is None
    assert ((t >= 0) & (t <= 1)).all()
    assert (t > 0).any()  # the random boxes overlap the GT, so this is not trivially all zeros


def test_iou_targets_through_decode_by_hand():
    # zero deltas decode to the anchor itself; [0,0,4,4] vs [0,0,4,2] -> 8 / 16 = 0.5
    pred = decode_boxes(torch.zeros(1, 4), torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    assert torch.allclose(iou_targets(pred, torch.tensor([[0.0, 0.0, 4.0, 2.0]])), torch.tensor([0.5]))


def test_iou_targets_keeps_leading_shape_and_rejects_mismatch():
    boxes = torch.tensor([0.0, 0.0, 2.0, 2.0]).expand(2, 3, 4)
    assert iou_targets(boxes, boxes).shape == (2, 3)
    assert torch.equal(iou_targets(boxes, boxes), torch.ones(2, 3))
    with pytest.raises(ValueError, match="same shape"):
        iou_targets(torch.zeros(3, 4), torch.zeros(2, 4))


# ----------------------------------------------------------------------------- objectness_loss
def test_soft_target_bce_by_hand():
    # logit 0 -> p = 0.5; target 0.5: -(0.5 ln 0.5 + 0.5 ln 0.5) = ln 2
    loss = objectness_loss(torch.zeros(1), torch.tensor([0.5]), torch.tensor([True]), normalizer=1.0)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(LN2)


def test_positives_only_sum_and_normaliser_by_hand():
    # (N=1, R=4). Positives 0 and 1; anchor 2 is background with a huge logit, anchor 3 a positive-looking
    # logit that is not positive: neither may count with neg_weight = 0.
    logits = torch.tensor([[0.0, LN3, 9.0, 0.0]])  # sigma(ln 3) = 0.75
    targets = torch.tensor([[0.5, 1.0, 0.0, 0.3]])
    pos = torch.tensor([[True, True, False, False]])
    # anchor 0: ln 2; anchor 1: -ln 0.75 = ln(4/3). Sum / 4.
    expected = (LN2 + math.log(4 / 3)) / 4
    loss = objectness_loss(logits, targets, pos, normalizer=4.0)
    assert loss.item() == pytest.approx(expected)
    # normaliser may be a tensor (an EMA kept on device)
    assert objectness_loss(logits, targets, pos, normalizer=torch.tensor(4.0)).item() == pytest.approx(expected)


def test_gradient_by_hand():
    # d BCE / d x = sigma(x) - y; logit 0: target 1 -> -0.5, target 0.5 -> 0; divided by normaliser 2.
    logits = torch.zeros(3, requires_grad=True)
    objectness_loss(
        logits, torch.tensor([1.0, 0.5, 1.0]), torch.tensor([True, True, False]), normalizer=2.0
    ).backward()
    assert torch.allclose(logits.grad, torch.tensor([-0.25, 0.0, 0.0]))


def test_compact_targets_equal_dense_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 6)
    pos = torch.tensor([[True, False, True, False, False, True], [False, True, False, False, True, False]])
    dense = torch.rand(2, 6)
    compact = dense[pos]  # row-major order, what iou_targets(pred[pos], gt[pos]) returns
    a = objectness_loss(logits, dense, pos, normalizer=3.0)
    b = objectness_loss(logits, compact, pos, normalizer=3.0)
    assert torch.allclose(a, b)
    # and a wrong count is refused, not silently broadcast
    with pytest.raises(ValueError, match="positive"):
        objectness_loss(logits, compact[:-1], pos, normalizer=3.0)


def test_head_layout_with_trailing_singleton():
    # the head emits (N, R, 1); the masks are (N, R)
    logits = torch.zeros(1, 2, 1)
    loss = objectness_loss(logits, torch.tensor([[[0.5], [0.5]]]), torch.tensor([[True, False]]), normalizer=1.0)
    assert loss.item() == pytest.approx(LN2)


def test_celoss_w_weights_negatives_and_skips_ignored():
    logits = torch.tensor([[0.0, LN3, 0.0, 100.0]])
    pos = torch.tensor([[True, False, False, False]])
    valid = torch.tensor([[True, True, True, False]])  # anchor 3 ignored (between the IoU thresholds)
    targets = torch.tensor([[0.5, 0.0, 0.0, 0.0]])
    # positive: ln 2; negatives with target 0: -ln(1 - 0.75) = ln 4 = 2 ln 2 and -ln 0.5 = ln 2.
    # Ignored anchor would add 0.1 * ~100 if counted.  total = ln2 + 0.1 * 3 ln2 = 1.3 ln 2; / 2.
    loss = objectness_loss(logits, targets, pos, normalizer=2.0, valid_mask=valid, neg_weight=0.1)
    assert loss.item() == pytest.approx(1.3 * LN2 / 2)
    per_anchor = objectness_loss(
        logits, targets, pos, normalizer=2.0, valid_mask=valid, neg_weight=0.1, reduction="none"
    )
    assert per_anchor.shape == (1, 4)
    assert torch.allclose(per_anchor, torch.tensor([[LN2, 0.2 * LN2, 0.1 * LN2, 0.0]]) / 2)
    # neg_weight = 0 with the same masks is the plain positives-only loss
    plain = objectness_loss(logits, targets, pos, normalizer=2.0, valid_mask=valid)
    assert plain.item() == pytest.approx(LN2 / 2)


def test_reduction_none_positives_only():
    logits = torch.tensor([0.0, 5.0, LN3])
    targets = torch.tensor([0.5, 0.0, 1.0])
    pos = torch.tensor([True, False, True])
    out = objectness_loss(logits, targets, pos, normalizer=2.0, reduction="none")
    assert torch.allclose(out, torch.tensor([LN2, 0.0, math.log(4 / 3)]) / 2)


def test_no_positives_zero_loss_that_backpropagates():
    # also with an inf logit: 0 * inf would be NaN, the masked sum must stay exactly 0
    logits = torch.tensor([[0.3, -2.0, float("inf")]], requires_grad=True)
    pos = torch.zeros(1, 3, dtype=torch.bool)
    loss = objectness_loss(logits, torch.zeros(1, 3), pos, normalizer=1.0)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert torch.equal(logits.grad, torch.zeros(1, 3))


def test_no_positives_with_compact_empty_targets():
    logits = torch.zeros(2, 3, requires_grad=True)
    pos = torch.zeros(2, 3, dtype=torch.bool)
    loss = objectness_loss(logits, torch.zeros(0), pos, normalizer=1.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(2, 3))


def test_loss_sends_no_gradient_into_regression_branch():
    # The full path: decoded boxes require grad, but only the objectness logits may receive gradient.
    deltas = torch.zeros(2, 4, requires_grad=True)
    anchors = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    gt = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    targets = iou_targets(decode_boxes(deltas, anchors), gt)  # [0.5, 1.0]
    logits = torch.zeros(2, requires_grad=True)
    objectness_loss(logits, targets, torch.tensor([True, True]), normalizer=1.0).backward()
    assert deltas.grad is None
    assert torch.allclose(logits.grad, torch.tensor([0.0, -0.5]))  # sigma(0) - y
    # even a target tensor that requires grad is detached inside the loss
    t = torch.tensor([0.5, 1.0], requires_grad=True)
    objectness_loss(torch.zeros(2, requires_grad=True), t, torch.tensor([True, True]), normalizer=1.0).backward()
    assert t.grad is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(normalizer=0.0), "normalizer"),
        (dict(normalizer=1.0, reduction="mean"), "reduction"),
        (dict(normalizer=1.0, neg_weight=-1.0), "neg_weight"),
        (dict(normalizer=1.0, neg_weight=1e-4), "valid_mask"),
        (dict(normalizer=1.0, valid_mask=torch.ones(3, dtype=torch.bool)), "valid_mask"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        objectness_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool), **kwargs)


def test_mask_must_be_bool_and_match_shape():
    with pytest.raises(ValueError, match="bool"):
        objectness_loss(torch.zeros(2), torch.zeros(2), torch.tensor([1, 0]), normalizer=1.0)
    with pytest.raises(ValueError, match="shape"):
        objectness_loss(torch.zeros(2), torch.zeros(2), torch.tensor([True, False, True]), normalizer=1.0)
