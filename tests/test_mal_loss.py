"""MAL bag losses (docs/methods.md#mal-bag-losses), checked against hand arithmetic."""
import math

import pytest
import torch

from alignment_det.losses.mal_loss import (
    bag_confidence,
    mal_losses,
    mean_max,
    negative_bag_loss,
    negative_bag_support,
    positive_bag_loss,
    select_top_confidences,
)

LN2 = math.log(2.0)


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p)).float()


def close(a, b, rtol=1e-5, atol=1e-6):
    return math.isclose(float(torch.as_tensor(a).detach()), float(b), rel_tol=rtol, abs_tol=atol)


# --------------------------------------------------------------------------- sub-steps


def test_bag_confidence_by_hand():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 20, 10]])
    gt = torch.tensor([[0.0, 0, 10, 10]])
    cls_prob = torch.tensor([[0.9, 0.5], [0.1, 0.4]], requires_grad=True)
    deltas = torch.tensor([[0.05, 0.0, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    q = bag_confidence(cls_prob, deltas, anchors, gt, torch.tensor([1]), torch.tensor([[0, 1]]))
    # anchor 0 == GT -> target 0. SmoothL1_{0.11}: |0.05| < .11 -> 0.5 * .05^2 / .11; |0.2| -> 0.2 - 0.055
    l0 = 0.75 * (0.5 * 0.05**2 / 0.11 + (0.2 - 0.055))
    # anchor 1: w 20, cx 10; GT w 10, cx 5 -> dx = 10 * (5 - 10) / 20 = -2.5, dw = 5 * ln(10/20) = -5 ln2
    l1 = 0.75 * ((2.5 - 0.055) + (5 * LN2 - 0.055))
    # p_cls is the GT class column (1), not column 0
    expected = [0.5 * math.exp(-l0), 0.4 * math.exp(-l1)]
    assert q.shape == (1, 2)
    assert all(close(a, b) for a, b in zip(q[0].tolist(), expected))
    # gradient flows through p_loc: dq/d(delta_x) = -q * 0.75 * 0.05 / 0.11 (quadratic branch)
    q[0, 0].backward()
    assert close(deltas.grad[0, 0], -expected[0] * 0.75 * 0.05 / 0.11)
    # ... and through p_cls: dq/dp = p_loc
    assert close(cls_prob.grad[0, 1], math.exp(-l0)) and cls_prob.grad[0, 0] == 0


def test_mean_max_and_positive_bag_loss_by_hand():
    # w = 1/(1-q) = [1.25, 2, 4]; sum w = 7.25; sum w q = .25 + 1 + 3 = 4.25 -> 17/29
    q = torch.tensor([[0.2, 0.5, 0.75], [0.5, 0.5, 0.5]])
    assert torch.allclose(mean_max(q), torch.tensor([17 / 29, 0.5]))
    assert torch.allclose(positive_bag_loss(q), torch.tensor([-math.log(17 / 29), LN2]))
    # mean-max lies between mean and max
    assert (mean_max(q) >= q.mean(1) - 1e-7).all() and (mean_max(q) <= q.max(1).values + 1e-7).all()


def test_mean_max_saturated_and_empty_confidence_are_finite():
    q = torch.tensor([[1.0, 0.3], [0.0, 0.0]], requires_grad=True)
    loss = positive_bag_loss(q)
    # row 0: w = [1e12, 1/0.7] -> P ~ 1 -> clamped to 1 - 1e-6; row 1: P = 0 -> clamped to 1e-6
    assert loss[0] < 1e-5 and close(loss[1], -math.log(1e-6), rtol=1e-4)
    loss.sum().backward()
    assert torch.isfinite(q.grad).all()
    # the straight-through clamp keeps the learning signal on a hopeless bag: d(-log P)/dP = -1/1e-6,
    # dP/dq_j = 1/2 at q = 0 (w = 1) -> -5e5 on each entry
    assert torch.allclose(q.grad[1], torch.full((2,), -0.5e6), rtol=1e-3)


def test_selection_keeps_top_m_by_value():
    q = torch.tensor([[0.1, 0.7, 0.3, 0.6]], requires_grad=True)
    sel = select_top_confidences(q, 2)
    assert sorted(sel[0].tolist()) == pytest.approx([0.6, 0.7])
    sel.sum().backward()
    assert q.grad.tolist() == [[0.0, 1.0, 0.0, 1.0]]  # gradient only to the kept entries
    assert select_top_confidences(q, 4) is q


def test_negative_bag_support_by_hand():
    gts = torch.tensor(
        [
            [0.0, 0, 10, 10],  # A, class 0
            [20.0, 0, 30, 10],  # B, class 0
            [0.0, 0, 10, 10],  # C, class 1 (same box as A)
            [50.0, 0, 60, 10],  # E, class 2: best IoU exactly t1 = 0.6
            [0.0, 0, 10, 8],  # A2, class 0, overlapping A: Q takes the max over A and A2, not the sum
        ]
    )
    classes = torch.tensor([0, 0, 1, 2, 0])
    preds = torch.tensor(
        [
            [0.0, 0, 10, 10],  # IoU(A) = 1
            [0.0, 0, 10, 8],  # IoU(A) = 80/100 = .8
            [0.0, 0, 10, 7],  # IoU(A) = .7
            [20.0, 0, 30, 9],  # IoU(B) = .9
            [20.0, 0, 30, 5],  # IoU(B) = .5
            [50.0, 0, 60, 6],  # IoU(E) = 60/100 = .6
        ]
    )
    # A: t2 = 1 -> P = (J - .6)/.4 = [1, .5, .25, 0, 0, 0];  B: t2 = .9 -> P = (J - .6)/.3 -> [.., 1 @ d3, 0 @ d4]
    # E: t2 = max(.6, .6 + 1e-12) -> every P = 0 (and no 0/0); class 3 has no GT -> 0
    # A2 vs d0, d1, d2: 80/100 = .8, 1, 70/80 = .875 -> t2 = 1 -> P = .5, 1, .6875
    # class 0 = max(A, B, A2) = [1, 1, .6875, 1, 0, 0]; class 1 (C only) = [1, .5, .25, 0, 0, 0]
    expected = torch.tensor(
        [
            [1.0, 1.0, 0, 0],
            [1.0, 0.5, 0, 0],
            [0.6875, 0.25, 0, 0],
            [1.0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    for chunk in (1, 2, 64):
        q = negative_bag_support(gts, classes, preds, 4, saturation_thresh=0.6, chunk_size=chunk)
        assert q.shape == (6, 4)
        assert torch.isfinite(q).all()
        assert torch.allclose(q, expected, atol=1e-6)


def test_negative_bag_loss_by_hand():
    p = torch.tensor([[0.5, 0.9]], requires_grad=True)
    support = torch.tensor([[0.5, 0.0]])
    # n = [.25, .9]: .25^2 * -ln(.75) + .9^2 * -ln(.1)
    expected = 0.0625 * -math.log(0.75) + 0.81 * math.log(10)
    assert close(negative_bag_loss(p, support, gamma=2.0), expected)
    # gamma = 0 is plain BCE towards 0
    assert close(negative_bag_loss(p, support, gamma=0.0), -math.log(0.75) + math.log(10))
    # n = 1 is clamped to 1 - 1e-6: loss ~ -ln(1e-6) = 13.8 and an ordinary clamp (no gradient)
    p1 = torch.tensor([[1.0]], requires_grad=True)
    loss = negative_bag_loss(p1, torch.zeros(1, 1))
    assert 13.7 < loss.item() < 13.9
    loss.backward()
    assert p1.grad.item() == 0.0


# --------------------------------------------------------------------------- mal_losses


def _single_image_scene(num_extra_images=0):
    """R = 3 anchors all equal to the GT box [0, 0, 10, 10] (class 0), K = 2, zero deltas.

    Targets are zero, so p_loc = 1 and q = p_cls = [.2, .5, .75]. Decoded boxes equal the GT
    -> IoU 1 -> Q[:, 0] = 1, Q[:, 1] = 0. Class-1 logits are 0 (p = .5).
    """
    n = 1 + num_extra_images
    anchors = torch.tensor([[0.0, 0, 10, 10]] * 3)
    logits = torch.zeros(n, 3, 2)
    logits[0, :, 0] = logit([0.2, 0.5, 0.75])
    deltas = torch.zeros(n, 3, 4)
    gt_boxes = [torch.tensor([[0.0, 0, 10, 10]])] + [torch.zeros(0, 4)] * num_extra_images
    gt_classes = [torch.tensor([0])] + [torch.zeros(0, dtype=torch.long)] * num_extra_images
    return logits, deltas, anchors, gt_boxes, gt_classes


def test_all_mode_is_minus_log_mean_max_over_whole_bag():
    # bag_size 10 > R = 3 -> k_bag = 3 (docs/methods.md#mal-edge-cases)
    out = mal_losses(*_single_image_scene(), bag_size=10, progress=None)
    assert close(out["loss_mal_pos"], 0.5 * -math.log(17 / 29))
    assert out["num_selected"].item() == 3 and not out["num_selected"].requires_grad
    # negative: class 0 has Q = 1 -> n = 0 (clamped to 1e-6, ~1e-18 each); class 1: n = .5 -> 3 * .25 ln2
    # normaliser max(k_bag, k_bag * 1) = 3 -> 0.5 * 0.75 ln2 / 3
    assert close(out["loss_mal_neg"], 0.125 * LN2)
    # lambda = 0 keeps the whole bag too: m = clamp(floor(3) + 1, 1, 3) = 3
    assert close(mal_losses(*_single_image_scene(), bag_size=10, progress=0.0)["loss_mal_pos"], out["loss_mal_pos"])


def test_lambda_one_is_minus_log_max_and_mid_schedule_is_top_m():
    # lambda = 1 -> m = 1 -> -log max_j q_j
    out = mal_losses(*_single_image_scene(), bag_size=10, progress=1.0)
    assert close(out["loss_mal_pos"], 0.5 * -math.log(0.75))
    assert out["num_selected"].item() == 1
    # lambda = .5: m = floor(3 * .5) + 1 = 2 -> q = [.5, .75], w = [2, 4] -> P = (1 + 3) / 6 = 2/3
    out = mal_losses(*_single_image_scene(), bag_size=10, progress=0.5)
    assert close(out["loss_mal_pos"], 0.5 * -math.log(2 / 3))
    assert out["num_selected"].item() == 2


def test_top1_gradient_reaches_only_the_selected_anchor():
    logits, deltas, anchors, gt_boxes, gt_classes = _single_image_scene()
    logits.requires_grad_(True)
    mal_losses(logits, deltas, anchors, gt_boxes, gt_classes, bag_size=10, progress=1.0)["loss_mal_pos"].backward()
    # d(-log sigmoid(x))/dx = -(1 - p) = -.25 at p = .75, times alpha = .5 / (1 GT)
    assert close(logits.grad[0, 2, 0], -0.125)
    assert logits.grad[0, :2].abs().max() == 0 and logits.grad[0, 2, 1] == 0
    # all mode: every bag member gets a gradient
    logits.grad = None
    mal_losses(logits, deltas, anchors, gt_boxes, gt_classes, bag_size=10)["loss_mal_pos"].backward()
    assert (logits.grad[0, :, 0] < 0).all()


def test_per_gt_normalisation_and_alpha_split():
    # GT1 [0,0,10,10] class 0 on anchors 0-2 (q = .2, .5, .75); GT2 [100,0,110,10] class 1 on anchors 3-5
    # (q = .5 each -> P = .5). Bags of size 3 hold exactly those anchors (IoU 1 vs 0).
    anchors = torch.tensor([[0.0, 0, 10, 10]] * 3 + [[100.0, 0, 110, 10]] * 3)
    logits = torch.zeros(1, 6, 2)
    logits[0, :3, 0] = logit([0.2, 0.5, 0.75])
    gts = [torch.tensor([[0.0, 0, 10, 10], [100.0, 0, 110, 10]])]
    out = mal_losses(logits, torch.zeros(1, 6, 4), anchors, gts, [torch.tensor([0, 1])], bag_size=3, pos_neg_alpha=0.25)
    # pos: .25 * (-ln(17/29) + ln 2) / 2
    assert close(out["loss_mal_pos"], 0.25 * (-math.log(17 / 29) + LN2) / 2)
    # neg: Q = 1 on (0-2, class 0) and (3-5, class 1); the 6 other entries have n = .5 -> 6 * .25 ln2;
    # normaliser max(3, 3 * 2) = 6; weight 1 - .25
    assert close(out["loss_mal_neg"], 0.75 * 1.5 * LN2 / 6)


def test_image_without_gt_in_batch():
    out = mal_losses(*_single_image_scene(num_extra_images=1), bag_size=10)
    # positive unchanged (only image 0 has a bag, normaliser 1)
    assert close(out["loss_mal_pos"], 0.5 * -math.log(17 / 29))
    # image 1: Q = 0, all 6 logits 0 -> n = .5 -> 1.5 ln2; total .5 * (.75 + 1.5) ln2 / 3
    assert close(out["loss_mal_neg"], 0.5 * 2.25 * LN2 / 3)


def test_whole_batch_without_gt_is_finite_and_differentiable():
    logits = torch.zeros(2, 4, 3, requires_grad=True)
    deltas = torch.zeros(2, 4, 4, requires_grad=True)
    anchors = torch.tensor([[0.0, 0, 8, 8], [8.0, 0, 16, 8], [0.0, 8, 8, 16], [8.0, 8, 16, 16]])
    empty_b, empty_c = [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.long)] * 2
    out = mal_losses(logits, deltas, anchors, empty_b, empty_c, bag_size=50)
    assert out["loss_mal_pos"].item() == 0.0
    # 24 entries with n = .5 -> 24 * .25 ln2 = 6 ln2; guard normaliser max(k_bag = 4, 0) = 4 (code: 1)
    assert close(out["loss_mal_neg"], 0.5 * 6 * LN2 / 4)
    (out["loss_mal_pos"] + out["loss_mal_neg"]).backward()
    # d/dx [n^2 * -ln(1-n)] at n = sigmoid(x) = .5: (2n(-ln(1-n)) + n^2/(1-n)) * n(1-n) = (ln2 + .5) * .25
    assert torch.allclose(logits.grad, torch.full_like(logits, (LN2 + 0.5) * 0.25 * 0.5 / 4))
    assert deltas.grad is not None and torch.equal(deltas.grad, torch.zeros_like(deltas))


def test_sub_pixel_gt_gets_no_bag_but_feeds_support():
    # anchors 0-2 = GT A [0,0,10,10] (class 0); anchor 3 = tiny GT T [40,0,40.5,10] (class 1, 0.5 px wide)
    anchors = torch.tensor([[0.0, 0, 10, 10]] * 3 + [[40.0, 0, 40.5, 10]])
    logits = torch.zeros(1, 4, 2)
    logits[0, :3, 0] = logit([0.2, 0.5, 0.75])
    deltas = torch.zeros(1, 4, 4)
    gts = [torch.tensor([[0.0, 0, 10, 10], [40.0, 0, 40.5, 10]])]
    out = mal_losses(logits, deltas, anchors, gts, [torch.tensor([0, 1])], bag_size=3)
    # only A has a bag (normaliser 1, not 2): same positive as the one-GT scene
    assert close(out["loss_mal_pos"], 0.5 * -math.log(17 / 29))
    # Q[0-2, 0] = 1 (from A) and Q[3, 1] = 1 (from T, decoded anchor 3 == T). Remaining n = .5 entries:
    # (3, class 0) and (0-2, class 1) -> 4 * .25 ln2 = ln2; normaliser max(3, 3 * 1) = 3
    assert close(out["loss_mal_neg"], 0.5 * LN2 / 3)
    # a batch of only sub-pixel GTs: no positive term, negative normalised by k_bag
    only_tiny = mal_losses(logits, deltas, anchors, [gts[0][1:]], [torch.tensor([1])], bag_size=3)
    assert only_tiny["loss_mal_pos"].item() == 0.0
    # Q[3, 1] = 1; 7 entries with p = .5 except anchors 0-2 class 0 (p = .2, .5, .75)
    ps = [0.2, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5]
    expected = sum(p * p * -math.log(1 - p) for p in ps)
    assert close(only_tiny["loss_mal_neg"], 0.5 * expected / 3)


def _grid_anchors(size, strides=(8, 16), scales=(1.0, 1.5, 2.0)):
    out = []
    for s in strides:
        c = torch.arange(s / 2, size, s)
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        for sc in scales:
            half = s * sc
            out.append(torch.stack([cx - half, cy - half, cx + half, cy + half], -1).reshape(-1, 4))
    return torch.cat(out)


def _random_gts(n, size, gen, num_classes):
    xy = torch.rand(n, 2, generator=gen) * (size - 4)
    wh = 1 + torch.rand(n, 2, generator=gen) * 40
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:10, 2] = boxes[:10, 0] + 0.5  # a few 0.5-px boxes
    return boxes, torch.randint(0, num_classes, (n,), generator=gen)


def test_500_gts_finite_and_chunking_invariant():
    gen = torch.Generator().manual_seed(0)
    anchors = _grid_anchors(128)  # 16*16*3 + 8*8*3 = 960 anchors
    k = 5
    boxes, classes = _random_gts(500, 128, gen, k)
    logits0 = torch.randn(2, anchors.shape[0], k, generator=gen)
    deltas0 = 0.5 * torch.randn(2, anchors.shape[0], 4, generator=gen)
    results = []
    for chunk in (64, 100_000):
        logits, deltas = logits0.clone().requires_grad_(), deltas0.clone().requires_grad_()
        out = mal_losses(
            logits, deltas, anchors, [boxes, boxes[:37]], [classes, classes[:37]],
            bag_size=50, progress=0.3, gt_chunk_size=chunk,
        )
        (out["loss_mal_pos"] + out["loss_mal_neg"]).backward()
        results.append((out, logits.grad, deltas.grad))
    (a, ga, da), (b, gb, db) = results
    for key in ("loss_mal_pos", "loss_mal_neg"):
        assert torch.isfinite(a[key]) and a[key] > 0
        assert torch.allclose(a[key], b[key], rtol=1e-5)
    assert torch.isfinite(ga).all() and torch.isfinite(da).all()
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-9) and torch.allclose(da, db, rtol=1e-4, atol=1e-9)
    assert a["num_selected"].item() == 36  # floor(50 * .7) + 1


def test_extreme_inputs_are_nan_free():
    gen = torch.Generator().manual_seed(1)
    anchors = _grid_anchors(64)
    boxes, classes = _random_gts(30, 64, gen, 3)
    boxes[10] = torch.tensor([5.0, 5.0, 5.0, 5.0])  # zero-area box
    logits = (40 * torch.randn(2, anchors.shape[0], 3, generator=gen)).requires_grad_()
    deltas = (60 * torch.randn(2, anchors.shape[0], 4, generator=gen)).requires_grad_()
    out = mal_losses(logits, deltas, anchors, [boxes, boxes[:0]], [classes, classes[:0]], bag_size=40, progress=0.9)
    total = out["loss_mal_pos"] + out["loss_mal_neg"]
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(deltas.grad).all()


def test_low_precision_inputs_give_fp32_losses():
    logits, deltas, anchors, gt_boxes, gt_classes = _single_image_scene()
    out = mal_losses(logits.bfloat16(), deltas.bfloat16(), anchors, gt_boxes, gt_classes, bag_size=10)
    assert out["loss_mal_pos"].dtype == torch.float32 and out["loss_mal_neg"].dtype == torch.float32
    # bf16 logits round the probabilities a little; the value stays near the fp32 one
    assert close(out["loss_mal_pos"], 0.5 * -math.log(17 / 29), rtol=2e-2)


def test_shape_errors_are_reported():
    logits, deltas, anchors, gt_boxes, gt_classes = _single_image_scene()
    with pytest.raises(ValueError, match="box_deltas"):
        mal_losses(logits, deltas[:, :2], anchors, gt_boxes, gt_classes, bag_size=3)
    with pytest.raises(ValueError, match="anchors"):
        mal_losses(logits, deltas, anchors[:2], gt_boxes, gt_classes, bag_size=3)
    with pytest.raises(ValueError, match="per image"):
        mal_losses(logits, deltas, anchors, gt_boxes * 2, gt_classes, bag_size=3)
