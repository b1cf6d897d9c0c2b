"""The pure loss formulas: atss_losses, retinanet_o2m_losses (DATE-R), focal_targets,
positive_normalizer, by hand on tiny tensors."""
import math

import pytest
import torch

import alignment_det.utils.comm as comm
from alignment_det.losses.atss_losses import atss_losses
from alignment_det.losses.date_losses import retinanet_o2m_losses
from alignment_det.losses.focal import focal_targets
from alignment_det.utils.comm import positive_normalizer

LN2 = math.log(2.0)
# focal loss of a logit 0 (p = 0.5): target 1 -> 0.25 · 0.25 · ln2, target 0 -> 0.75 · 0.25 · ln2
FL_POS, FL_NEG = 0.0625 * LN2, 0.1875 * LN2


def test_focal_targets_one_hot_with_background_and_ignored_rows_zero():
    y = focal_targets(torch.tensor([-1, 0, 2, 3]), 3)
    assert y.dtype == torch.float32
    assert y.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert focal_targets(torch.tensor([[1]]), 2, torch.float16).dtype == torch.float16


def test_positive_normalizer_is_the_mean_over_ranks_floored(monkeypatch):
    assert positive_normalizer(0).item() == 1.0 and positive_normalizer(7).item() == 7.0
    assert positive_normalizer(torch.tensor(0.5), floor=1e-6).item() == 0.5
    # pretend the other ranks bring the mean to 3 (this rank has 7)
    monkeypatch.setattr(comm, "all_reduce_mean", lambda t: torch.full_like(t, 3.0))
    assert positive_normalizer(7).item() == 3.0


def _atss_inputs():
    logits = torch.zeros(1, 2, 1)  # two priors, one class
    labels = torch.tensor([[0, 1]])  # a positive and a background prior
    gt = torch.tensor([[0.0, 0, 2, 2]])
    boxes = torch.tensor([[0.0, 0, 1, 2]])  # IoU 1/2, enclosing box = gt: GIoU 1/2
    ctr = torch.tensor([0.25])
    return logits, labels, boxes, gt, ctr


def test_atss_losses_by_hand():
    logits, labels, boxes, gt, ctr = _atss_inputs()
    out = atss_losses(logits, labels, boxes, gt, ctr, torch.zeros(1), ctr, positive_normalizer(1), init_boxes=gt)
    assert list(out) == ["loss_cls", "loss_box_reg", "loss_box_reg_init", "loss_quality"]
    assert out["loss_cls"].item() == pytest.approx(FL_POS + FL_NEG, rel=1e-6)
    # 2 · c·(1 - GIoU) / max(Σc, 1) = 2 · 0.25 · 0.5 / 1
    assert out["loss_box_reg"].item() == pytest.approx(0.25, rel=1e-6)
    assert out["loss_box_reg_init"].item() == pytest.approx(0.0, abs=1e-6)  # the initial box is the GT
    # BCE(logit 0, 0.25) = ln2 whatever the target, / #pos 1
    assert out["loss_quality"].item() == pytest.approx(LN2, rel=1e-6)


def test_atss_box_loss_divides_by_the_centerness_sum_above_one():
    logits, labels, boxes, gt, _ = _atss_inputs()
    boxes, gt, ctr = boxes.repeat(3, 1), gt.repeat(3, 1), torch.full((3,), 0.8)
    out = atss_losses(logits, labels, boxes, gt, ctr, torch.zeros(3), ctr, positive_normalizer(3))
    assert "loss_box_reg_init" not in out
    assert out["loss_box_reg"].item() == pytest.approx(2 * 3 * 0.8 * 0.5 / 2.4, rel=1e-6)
    assert out["loss_quality"].item() == pytest.approx(LN2, rel=1e-6)  # 3 ln2 / 3 positives


def test_retinanet_o2m_losses_by_hand():
    logits = torch.tensor([[[0.0], [0.0], [50.0]]])  # the ignored anchor's huge logit must not count
    labels = torch.tensor([[0, 1, -1]])
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [5, 5, 15, 15]])
    matched = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 0, 0]]])
    deltas = torch.tensor([[[0.1, -0.2, 0.3, 0.0], [9.0, 9, 9, 9], [9.0, 9, 9, 9]]])  # δ* = 0 at the positive
    out = retinanet_o2m_losses(logits, deltas, labels, anchors, matched)
    assert out["loss_o2m_cls"].item() == pytest.approx(2 * (FL_POS + FL_NEG), rel=1e-6)
    assert out["loss_o2m_box_reg"].item() == pytest.approx(2 * 0.6, rel=1e-6)
    # δ* uses the transform's weights: a GT shifted by 0.1 anchor widths has δ*_x = 10 · 0.1 = 1
    matched[0, 0] = torch.tensor([1.0, 0, 11, 10])
    out = retinanet_o2m_losses(logits, torch.zeros(1, 3, 4), labels, anchors, matched, box_weights=(10.0, 10, 5, 5))
    assert out["loss_o2m_box_reg"].item() == pytest.approx(2 * 1.0, rel=1e-5)
