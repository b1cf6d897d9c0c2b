"""HCRA-C and HCRA-R on plain tensors (docs/methods.md#hcra-c). No Detectron2."""
import math

import pytest
import torch
import torch.nn.functional as F

from _gloo import run_gloo
from alignment_det.losses.hcra import (
    HCRACLoss,
    HCRARLoss,
    conditioning_factor,
    hcrar_factors,
    prior_ious,
    residual_factor,
)


def sig(x):
    return 1 / (1 + math.exp(-x))


# ------------------------------------------------------------------------------------ HCRA-C
def test_conditioning_factor_by_hand():
    u = torch.tensor([0.5, 0.5, 0.9, 0.0, 0.7])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    # positive: u = .5; negatives: 1 - u (u - .7)²: .5 -> 1 - .5·.04 = .98; .9 -> 1 - .9·.04 = .964;
    # u = 0 -> 1; u = μ -> 1
    torch.testing.assert_close(conditioning_factor(u, y, 0.7), torch.tensor([0.5, 0.98, 0.964, 1.0, 1.0]))


def test_residual_factor_both_modes_by_hand():
    p = torch.tensor([0.2, 0.7, 0.2, 0.9])
    u = torch.tensor([0.6, 0.6, 0.6, 0.1])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # RCI = p - u = -.4, +.1 (positives); negatives get 1 whatever RCI is.
    mirrored = residual_factor(p, u, y, theta=5.0, alpha=0.0, mode="mirrored")
    torch.testing.assert_close(mirrored, torch.tensor([sig(5 * 0.4), 0.0, 1.0, 1.0]))
    literal = residual_factor(p, u, y, theta=5.0, alpha=0.0, mode="literal")
    torch.testing.assert_close(literal, torch.tensor([0.0, sig(5 * 0.1), 1.0, 1.0]))
    # α_c shifts RCI: p - u + .5 = +.1 for the first positive -> 0 in mirrored mode
    shifted = residual_factor(p, u, y, theta=5.0, alpha=0.5, mode="mirrored")
    assert shifted[0].item() == 0.0
    with pytest.raises(ValueError, match="rci_mode"):
        residual_factor(p, u, y, theta=5.0, alpha=0.0, mode="printed")


def test_literal_mode_splits_on_p_above_u_not_on_rci_sign():
    # Paper Eq. 5: p = .85 > u = .8 -> σ(θ·RCI) with RCI = .85 - .8 - .1 = -.05, although RCI < 0.
    p, u, y = torch.tensor([0.85, 0.75]), torch.tensor([0.8, 0.8]), torch.tensor([1.0, 1.0])
    literal = residual_factor(p, u, y, theta=5.0, alpha=-0.1, mode="literal")
    # the second positive has p = .75 <= u -> 0
    torch.testing.assert_close(literal, torch.tensor([sig(5 * -0.05), 0.0]))
    assert abs(literal[0].item() - 0.4378235) < 1e-6  # 1 / (1 + e^0.25), by hand


def test_hcrac_loss_by_hand():
    # Two priors, one class, no EMA. x = (0, 2): p = (.5, σ(2)); y = (1, 0); u = (.6, .3).
    # g = |p - y| = (.5, .881): bins 10 and 17 of 20 -> tot 2, n 2, β = 2/1/2 = 1 each.
    # ω = (u = .6, 1 - .3·(.3 - .7)² = .952); RCI mirrored: prior 0 p - u = -.1 -> σ(.5), prior 1 -> 1.
    # BCE = (-log .5, softplus(2)). L = (1·.6·σ(.5)·log 2 + 1·.952·1·softplus(2)) / tot.
    logits = torch.tensor([[0.0], [2.0]], requires_grad=True)
    targets = torch.tensor([[1.0], [0.0]])
    u = torch.tensor([0.6, 0.3])
    out = HCRACLoss(momentum=0.0)(logits, targets, u)
    w0, w1 = 0.6 * sig(0.5), 0.952
    expected = (w0 * math.log(2) + w1 * math.log(1 + math.exp(2))) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.num_nonempty_bins.item() == 2
    # all factors are detached: dL/dx = weight · (p - y) / tot
    out.loss.backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[w0 * (0.5 - 1) / 2], [w1 * sig(2) / 2]]))
    # literal mode: prior 0 has p < u -> weight 0, only the negative remains
    lit = HCRACLoss(momentum=0.0, rci_mode="literal")(logits.detach(), targets, u)
    assert lit.loss.item() == pytest.approx(w1 * math.log(1 + math.exp(2)) / 2, rel=1e-6)
    # no RCI (Table 1): prior 0 keeps its ω·β
    no_rci = HCRACLoss(momentum=0.0, use_rci=False)(logits.detach(), targets, u)
    assert no_rci.loss.item() == pytest.approx((0.6 * math.log(2) + w1 * math.log(1 + math.exp(2))) / 2, rel=1e-6)
    # no IoU conditioning: ω = 1, so prior 0 keeps σ(.5) (its RCI) and prior 1 loses its .952
    no_cond = HCRACLoss(momentum=0.0, use_iou_conditioning=False)(logits.detach(), targets, u)
    assert no_cond.loss.item() == pytest.approx((sig(0.5) * math.log(2) + math.log(1 + math.exp(2))) / 2, rel=1e-6)


def test_hcrac_image_without_gt_is_all_negative_with_unit_factors():
    """docs/methods.md#hcral-edge-cases: G = 0 -> every element negative with u = 0 -> ω = 1, RCI = 1: L = Σ β·BCE / tot."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 50, 3, generator=g)
    targets = torch.zeros_like(logits)
    u = prior_ious(torch.rand(50, 4), torch.zeros(0, 4), torch.zeros(50, dtype=torch.bool), torch.zeros(50, 4))[None]
    assert torch.equal(u, torch.zeros(1, 50))
    out = HCRACLoss(momentum=0.0)(logits, targets, u)
    from alignment_det.losses.ghm import GHMHarmonizer

    beta = GHMHarmonizer(momentum=0.0)(logits.sigmoid()).beta
    ref = (beta * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")).sum() / logits.numel()
    torch.testing.assert_close(out.loss, ref)


def test_prior_ious_by_hand():
    pred = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [100.0, 100, 110, 110]])
    gts = torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 10, 10]])
    # prior 0 assigned to GT 0: its IoU with GT 0 (100/200 = .5), not the max (1 with GT 1);
    # prior 1 background: max over GTs = 1; prior 2 background far away: 0.
    for chunk in (1, 256):
        matched = torch.stack([gts[0], gts[0], gts[0]])  # only row 0 is a positive
        u = prior_ious(pred, gts, torch.tensor([True, False, False]), matched, gt_chunk_size=chunk)
        torch.testing.assert_close(u, torch.tensor([0.5, 1.0, 0.0]))


# ------------------------------------------------------------------------------------ HCRA-R
def test_hcrar_factors_by_hand():
    # pred [0,0,10,10] vs GT [0,0,10,20]: IoU = 100/200 = .5, R = .05 (above), γ = 1.5:
    # CF = exp(-.25/1.5)·exp(.05)·.5 for every row. α = -.1, ep = 1e-3:
    #   s = .8 : a = .7, s - IoU + α = .2 >= 0 -> (.49 + .25 + ep) / (2·.7·.5 + ep)
    #   s = .3 : a = .2, -.3 < 0 -> reciprocal of (.04 + .25 + ep) / (.2 + ep)
    #   s = .05: a = max(-.05, 0) = 0, -.55 < 0 -> reciprocal of (0 + .25 + ep) / (0 + ep) = ep / .251
    #   s = .6 : a = .5 = IoU, s - IoU + α = 0 -> (.25 + .25 + ep) / (.5 + ep) = 1 (>= branch)
    ep = 1e-3
    pred = torch.tensor([[0.0, 0, 10, 10]] * 4)
    gt = torch.tensor([[0.0, 0, 10, 20]] * 4)
    s = torch.tensor([0.8, 0.3, 0.05, 0.6])
    iou, cf, rci = hcrar_factors(pred, gt, s, gamma=1.5, alpha=-0.1, ep=ep)
    torch.testing.assert_close(iou, torch.full((4,), 0.5))
    torch.testing.assert_close(cf, torch.full((4,), math.exp(-0.25 / 1.5) * math.exp(0.05) * 0.5))
    expected = [(0.49 + 0.25 + ep) / (0.7 + ep), (0.2 + ep) / (0.29 + ep), ep / (0.25 + ep), 1.0]
    torch.testing.assert_close(rci, torch.tensor(expected))


def test_rci_reg_is_never_negative():
    """RCI_reg >= 0 for any score and IoU, including s < -α (clamped a = 0) and IoU 0 or 1."""
    g = torch.Generator().manual_seed(0)
    n = 2000
    xy = torch.rand(n, 2, generator=g) * 50
    pred = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 0.1], 1)
    gt = pred + torch.randn(n, 4, generator=g) * torch.rand(n, 1, generator=g) * 40
    gt = torch.cat([torch.minimum(gt[:, :2], gt[:, 2:]), torch.maximum(gt[:, :2], gt[:, 2:])], 1)
    gt[:5] = pred[:5]  # IoU exactly 1
    s = torch.rand(n, generator=g)
    s[:100] = 0.0
    s[100:200] = 1.0
    for alpha in (-0.1, 0.1, -1.0):
        iou, cf, rci = hcrar_factors(pred, gt, s, gamma=1.5, alpha=alpha, ep=1e-3)
        assert (rci > 0).all() and torch.isfinite(rci).all()
        assert (cf >= 0).all() and (iou == 0).any() and (iou == 1).any()


def test_hcrar_loss_running_mean_and_weights_by_hand():
    m = 0.01
    loss = HCRARLoss(gamma=1.5, alpha=-0.1, ep=1e-3, momentum=m)
    pred = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]], requires_grad=True)
    gt = torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 10, 20]])
    s = torch.tensor([0.8, 0.3])
    _, cf, rci = hcrar_factors(pred, gt, s, gamma=1.5, alpha=-0.1, ep=1e-3)
    # Step 1: r̄ starts at the batch mean. GIoU of pred/GT: IoU .5, enclosing = GT -> GIoU = .5.
    out = loss(pred, gt, s)
    mean1 = rci.mean()
    assert out.running_mean.item() == pytest.approx(mean1.item()) and loss.num_updates.item() == 1
    w = rci / mean1 * cf
    assert out.loss_sum.item() == pytest.approx((w * (1 - 0.5)).sum().item(), rel=1e-6)
    # gradient only through GIoU: the weights are constants
    out.loss_sum.backward()
    pred2 = pred.detach().clone().requires_grad_(True)
    from alignment_det.utils.boxes import aligned_giou

    (w * (1 - aligned_giou(pred2, gt))).sum().backward()
    torch.testing.assert_close(pred.grad, pred2.grad)
    # Step 2 (one positive, s = .05): r̄ = (1 - m)·mean1 + m·rci(.05)
    _, _, rci2 = hcrar_factors(pred[:1], gt[:1], torch.tensor([0.05]), gamma=1.5, alpha=-0.1, ep=1e-3)
    out = loss(pred[:1].detach(), gt[:1], torch.tensor([0.05]))
    assert out.running_mean.item() == pytest.approx((1 - m) * mean1.item() + m * rci2.item())
    # A batch without positives leaves the state unchanged and gives 0.
    before = loss.running_mean.clone()
    out = loss(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4), torch.zeros(0))
    assert out.loss_sum.item() == 0.0 and torch.equal(loss.running_mean, before) and loss.num_updates.item() == 2
    # eval mode: no update
    loss.eval()
    loss(pred.detach(), gt, s)
    assert torch.equal(loss.running_mean, before)


def test_hcrar_state_round_trip_and_fresh_start():
    a = HCRARLoss()
    a(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[1.0, 1, 11, 12]]), torch.tensor([0.4]))
    b = HCRARLoss()
    b.load_state_dict(a.state_dict())
    assert b.running_mean.item() == a.running_mean.item() > 0 and b.num_updates.item() == 1
    c = HCRARLoss()
    assert c.load_state_dict({}, strict=True).missing_keys == []
    # A checkpoint with only part of the state is another module's: reported as usual.
    with pytest.raises(RuntimeError, match="num_updates"):
        c.load_state_dict({"running_mean": torch.tensor(1.0)}, strict=True)


# ----------------------------------------------------------------------------- DDP (gloo, CPU)
def _hcrar_on_rank(rank):
    loss = HCRARLoss()
    # rank 0 has two positives, rank 1 none (a rank without positives, docs/methods.md#training-state)
    n = 2 if rank == 0 else 0
    pred = torch.tensor([[0.0, 0, 10, 10], [2.0, 2, 12, 14]])[:n]
    gt = torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 10, 10]])[:n]
    out = loss(pred, gt, torch.tensor([0.8, 0.3])[:n])
    return {"mean": out.running_mean.item(), "updates": loss.num_updates.item()}


def test_two_process_running_mean_is_shared_and_a_rank_without_positives_is_fine(tmp_path):
    res = run_gloo(_hcrar_on_rank, tmp_path)
    # Both ranks: the mean over all positives of the batch (rank 0's two), and one update each.
    _, _, rci = hcrar_factors(
        torch.tensor([[0.0, 0, 10, 10], [2.0, 2, 12, 14]]), torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 10, 10]]),
        torch.tensor([0.8, 0.3]), gamma=1.5, alpha=-0.1, ep=1e-3,
    )
    assert res[0] == res[1]
    assert res[0]["mean"] == pytest.approx(rci.mean().item()) and res[0]["updates"] == 1
