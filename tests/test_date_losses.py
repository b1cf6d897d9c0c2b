"""DATE o2o (OneNet-weighted) and FCOS o2m losses (docs/methods.md#date-losses)."""
import math

import pytest
import torch

import alignment_det.losses.date_losses as dl
import alignment_det.utils.comm as comm
from alignment_det.layers.max_filter_3d import fuse_filter_logits
from alignment_det.losses.date_losses import fcos_o2m_losses, o2o_losses
from alignment_det.utils.boxes import ltrb_to_boxes

LN2 = math.log(2)


def _one_image(pred_box, gt_box, gt_class=1, R=2, K=2, matched_loc=0):
    cls = torch.zeros(1, R, K, requires_grad=True)
    boxes = torch.tensor([[pred_box] * R], requires_grad=True)
    matches = [(torch.tensor([matched_loc]), torch.tensor([0]))]
    return cls, boxes, [torch.tensor([gt_box])], [torch.tensor([gt_class])], matches


def test_o2o_losses_by_hand():
    cls, boxes, gts, classes, matches = _one_image([10.0, 10, 30, 30], [20.0, 10, 40, 50])
    out = o2o_losses(cls, boxes, gts, classes, matches, [(50, 100)])  # (H, W) = (50, 100)
    # cls: 4 logits at 0 (p = 0.5), one positive (loc 0, class 1):
    #   pos 0.25 * 0.5^2 * ln2, 3 negatives 0.75 * 0.5^2 * ln2 -> 0.625 ln2; / n_pos 1 * 2 = 1.25 ln2
    assert out["loss_o2o_cls"].item() == pytest.approx(1.25 * LN2, rel=1e-6)
    # L1: divide by (W,H,W,H) = (100,50,100,50): pred (.1,.2,.3,.6) -> cxcywh (.2,.4,.2,.4);
    #   gt (.2,.2,.4,1.) -> (.3,.6,.2,.8); |diff| = .1+.2+0+.4 = .7; * 5 = 3.5
    assert out["loss_o2o_l1"].item() == pytest.approx(3.5, rel=1e-5)
    # GIoU: areas 400 / 800, overlap x 20..30, y 10..30 = 200, union 1000, IoU .2;
    #   hull (10,10,40,50) = 1200 -> GIoU = .2 - 200/1200 = 1/30; (1 - 1/30) * 2 = 29/15
    assert out["loss_o2o_giou"].item() == pytest.approx(29 / 15, rel=1e-5)


def test_o2o_l1_uses_unpadded_size_in_h_w_order():
    cls, boxes, gts, classes, matches = _one_image([10.0, 10, 30, 30], [20.0, 10, 40, 50])
    swapped = o2o_losses(cls, boxes, gts, classes, matches, torch.tensor([[100, 50]]))  # (H, W) = (100, 50)
    # /(50,100,50,100): pred (.2,.1,.6,.3) -> (.4,.2,.4,.2); gt (.4,.1,.8,.5) -> (.6,.3,.4,.4)
    #   |diff| = .2+.1+0+.2 = .5 -> 2.5 (differs from 3.5 with (H, W) = (50, 100))
    assert swapped["loss_o2o_l1"].item() == pytest.approx(2.5, rel=1e-5)


def test_o2o_normalised_by_matches_over_all_images():
    # image 0: two pairs, image 1: one pair, all with the same boxes -> L1 per pair .7 (see above);
    # sum 2.1 / n_pos 3 * 5 = 3.5, GIoU sum 3 * 29/30 / 3 * 2 = 29/15
    R, K = 3, 2
    cls = torch.zeros(2, R, K)
    boxes = torch.tensor([10.0, 10, 30, 30]).expand(2, R, 4)
    gt = torch.tensor([[20.0, 10, 40, 50]]).repeat(2, 1)
    matches = [(torch.tensor([0, 2]), torch.tensor([0, 1])), (torch.tensor([1]), torch.tensor([0]))]
    out = o2o_losses(cls, boxes, [gt, gt[:1]], [torch.tensor([0, 1]), torch.tensor([1])], matches, [(50, 100)] * 2)
    assert out["loss_o2o_l1"].item() == pytest.approx(3.5, rel=1e-5)
    assert out["loss_o2o_giou"].item() == pytest.approx(29 / 15, rel=1e-5)
    # cls: 12 elements at p=.5, 3 positives: (3*.25 + 9*.75) * .25 ln2 = 1.875 ln2; / 3 * 2 = 1.25 ln2
    assert out["loss_o2o_cls"].item() == pytest.approx(1.25 * LN2, rel=1e-6)


def test_o2o_uses_all_reduced_n_pos(monkeypatch):
    # pretend the mean over ranks of #matches is 4 (this rank has 1): every term is divided by 4
    monkeypatch.setattr(comm, "all_reduce_mean", lambda t: torch.full_like(t, 4.0))
    cls, boxes, gts, classes, matches = _one_image([10.0, 10, 30, 30], [20.0, 10, 40, 50])
    out = o2o_losses(cls, boxes, gts, classes, matches, [(50, 100)])
    assert out["loss_o2o_l1"].item() == pytest.approx(3.5 / 4, rel=1e-5)
    assert out["loss_o2o_cls"].item() == pytest.approx(1.25 * LN2 / 4, rel=1e-6)


def test_o2o_loss_weights():
    cls, boxes, gts, classes, matches = _one_image([10.0, 10, 30, 30], [20.0, 10, 40, 50])
    out = o2o_losses(cls, boxes, gts, classes, matches, [(50, 100)], loss_weights=(1.0, 1.0, 1.0))
    assert out["loss_o2o_cls"].item() == pytest.approx(0.625 * LN2, rel=1e-6)
    assert out["loss_o2o_l1"].item() == pytest.approx(0.7, rel=1e-5)
    assert out["loss_o2o_giou"].item() == pytest.approx(29 / 30, rel=1e-5)


def test_o2o_zero_gt_finite_and_backpropagates():
    R, K = 5, 3
    cls = torch.randn(2, R, K, requires_grad=True)
    boxes = (torch.rand(2, R, 4) * 10).requires_grad_()
    empty = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    out = o2o_losses(cls, boxes, [torch.zeros(0, 4)] * 2, [torch.zeros(0).long()] * 2, [empty] * 2, [(32, 32)] * 2)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["loss_o2o_l1"].item() == 0 and out["loss_o2o_giou"].item() == 0
    # n_pos clamps at 1: the cls term is the plain focal sum of the all-negative targets, times 2
    expected = 2 * dl.sigmoid_focal_loss(cls.detach(), torch.zeros(2, R, K), reduction="sum")
    assert out["loss_o2o_cls"].item() == pytest.approx(expected.item(), rel=1e-6)
    sum(out.values()).backward()
    assert torch.isfinite(cls.grad).all() and cls.grad.abs().sum() > 0
    assert boxes.grad is not None and torch.isfinite(boxes.grad).all()


def test_o2o_gradient_reaches_matched_box_only():
    cls, boxes, gts, classes, matches = _one_image([10.0, 10, 30, 30], [20.0, 10, 40, 50], R=3, matched_loc=1)
    out = o2o_losses(cls, boxes, gts, classes, matches, [(50, 100)])
    (out["loss_o2o_l1"] + out["loss_o2o_giou"]).backward()
    assert boxes.grad[0, 1].abs().sum() > 0 and boxes.grad[0, [0, 2]].abs().sum() == 0


def test_o2o_rejects_mismatched_batch():
    cls, boxes, gts, classes, matches = _one_image([10.0, 10, 30, 30], [20.0, 10, 40, 50])
    with pytest.raises(ValueError, match="one entry per image"):
        o2o_losses(cls, boxes, gts * 2, classes, matches, [(50, 100)])


def test_fuse_filter_logits_is_logit_of_product():
    c, f = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([1.0, 0.0, -0.5])
    fused = fuse_filter_logits(c, f)
    assert torch.allclose(torch.sigmoid(fused), torch.sigmoid(c) * torch.sigmoid(f), atol=1e-6)


# ---------------------------------------------------------------- FCOS o2m


def _o2m_inputs():
    K = 2
    cls = torch.zeros(3, K, requires_grad=True)
    labels = torch.tensor([0, K, 1])  # location 1 is background
    ltrb_p = torch.tensor([[1.0, 1, 1, 1], [5, 5, 5, 5], [1, 2, 3, 4]], requires_grad=True)
    ltrb_t = torch.tensor([[2.0, 2, 2, 2], [0, 0, 0, 0], [1, 2, 3, 4]])
    ctr_t = torch.tensor([1.0, 0.0, math.sqrt(1 / 3 * 2 / 4)])  # sqrt(min/max(l,r) * min/max(t,b))
    ctr_logit = torch.tensor([0.0, 7.0, math.log(3)], requires_grad=True)  # sigmoid(ln 3) = 0.75
    return cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t


def test_fcos_o2m_losses_by_hand():
    cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t = _o2m_inputs()
    out = fcos_o2m_losses(cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t)
    # n = #pos = 2. cls: 6 logits at 0, 2 positives: (2*.25 + 4*.75) * .25 ln2 = .875 ln2; / 2
    assert out["loss_o2m_cls"].item() == pytest.approx(0.875 * LN2 / 2, rel=1e-6)
    # IoU: loc 0 box (-1,-1,1,1) inside (-2,-2,2,2): 4/16 -> -ln .25 = ln 4, weight ctr* 1;
    #      loc 2 identical -> -ln 1 = 0. Normaliser sum ctr* = 1 + sqrt(1/6).
    assert out["loss_o2m_iou"].item() == pytest.approx(math.log(4) / (1 + math.sqrt(1 / 6)), rel=1e-5)
    # ctr BCE: loc 0 logit 0 -> ln 2 for any target; loc 2 p = .75, t = s = sqrt(1/6):
    #   -(s ln .75 + (1-s) ln .25); background location 1 (logit 7) is ignored; / n = 2
    s = math.sqrt(1 / 6)
    bce2 = -(s * math.log(0.75) + (1 - s) * math.log(0.25))
    assert out["loss_o2m_ctr"].item() == pytest.approx((LN2 + bce2) / 2, rel=1e-5)


def test_fcos_o2m_giou_box_loss_by_hand():
    # Detectron2 FCOS's box term: sum over positives of (1 - GIoU), / n, no centerness weight.
    cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t = _o2m_inputs()
    iou = fcos_o2m_losses(cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t)
    out = fcos_o2m_losses(cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t, box_loss="giou", loss_weights=(1, 3, 1))
    assert set(out) == {"loss_o2m_cls", "loss_o2m_giou", "loss_o2m_ctr"}
    # loc 0: (-1,-1,1,1) inside (-2,-2,2,2): IoU 4/16, the enclosing box is the target, so GIoU = 1/4
    # and 1 - GIoU = 3/4; loc 2 identical -> 0. n = 2, weight 3 -> 3 * 3/8.
    assert out["loss_o2m_giou"].item() == pytest.approx(3 * 0.75 / 2, rel=1e-6)
    for name in ("loss_o2m_cls", "loss_o2m_ctr"):  # the other two terms do not change
        assert out[name].item() == pytest.approx(iou[name].item(), rel=1e-6)
    out["loss_o2m_giou"].backward()
    assert ltrb_p.grad[0].abs().sum() > 0 and ltrb_p.grad[1].abs().sum() == 0  # background: no box loss
    # a prediction beside its target: GIoU < 0 (1 - GIoU > 1); with no overlap the IoU form would sit
    # at its -ln(eps) floor, without a gradient
    apart = fcos_o2m_losses(torch.zeros(1, 1), torch.tensor([[0.0, 0, 1, 1]]), torch.zeros(1), torch.tensor([0]),
                            torch.tensor([[1.0, 1, 0, 0]]), torch.ones(1), box_loss="giou")
    # pred (0,0,1,1), target (-1,-1,0,0): touching corners, enclosing (-1,-1,1,1) area 4, union 2
    assert apart["loss_o2m_giou"].item() == pytest.approx(1 + 2 / 4, rel=1e-5)
    with pytest.raises(ValueError, match="box_loss must be one of"):
        fcos_o2m_losses(cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t, box_loss="l1")


def test_fcos_o2m_loss_weights_and_batched_shapes():
    cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t = _o2m_inputs()
    base = fcos_o2m_losses(cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t)
    weighted = fcos_o2m_losses(cls, ltrb_p, ctr_logit, labels, ltrb_t, ctr_t, loss_weights=(2.0, 3.0, 4.0))
    for name, w in (("loss_o2m_cls", 2), ("loss_o2m_iou", 3), ("loss_o2m_ctr", 4)):
        assert weighted[name].item() == pytest.approx(w * base[name].item(), rel=1e-6)
    # (N, R, ...) layout gives the same numbers as the flattened one
    batched = fcos_o2m_losses(
        cls[None], ltrb_p[None], ctr_logit[None], labels[None], ltrb_t[None], ctr_t[None]
    )
    for name in base:
        assert batched[name].item() == pytest.approx(base[name].item())


def test_fcos_o2m_iou_clamped_for_disjoint_boxes():
    # zero-overlap is impossible around the same point, but a zero-size prediction has IoU 0:
    # the loss is -ln(1e-6), finite
    out = fcos_o2m_losses(
        torch.zeros(1, 1), torch.zeros(1, 4), torch.zeros(1), torch.tensor([0]), torch.ones(1, 4), torch.ones(1)
    )
    assert out["loss_o2m_iou"].item() == pytest.approx(-math.log(1e-6), rel=1e-5)


def test_fcos_o2m_no_positive_finite_and_backpropagates():
    K = 4
    cls = torch.randn(6, K, requires_grad=True)
    ltrb = torch.rand(6, 4).add(1).requires_grad_()
    ctr = torch.randn(6, requires_grad=True)
    out = fcos_o2m_losses(cls, ltrb, ctr, torch.full((6,), K), torch.zeros(6, 4), torch.zeros(6))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["loss_o2m_iou"].item() == 0 and out["loss_o2m_ctr"].item() == 0
    # n clamps at 1: cls = plain focal sum over all-negative targets
    expected = dl.sigmoid_focal_loss(cls.detach(), torch.zeros(6, K), reduction="sum")
    assert out["loss_o2m_cls"].item() == pytest.approx(expected.item(), rel=1e-6)
    sum(out.values()).backward()
    assert cls.grad.abs().sum() > 0 and torch.isfinite(ltrb.grad).all() and torch.isfinite(ctr.grad).all()


def test_ltrb_to_boxes():
    # location (10, 20), ltrb (1, 2, 3, 4) -> (9, 18, 13, 24)
    assert ltrb_to_boxes(torch.tensor([[10.0, 20]]), torch.tensor([[1.0, 2, 3, 4]])).tolist() == [[9, 18, 13, 24]]
