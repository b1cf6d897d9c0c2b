"""GHM harmoniser (docs/methods.md#ghm-harmoniser). No Detectron2."""
import pytest
import torch
import torch.nn.functional as F

from _gloo import run_gloo
from alignment_det.losses.ghm import GHMHarmonizer
from alignment_det.losses.hcra import HCRACLoss


def mmdet_ghmc(pred, target, label_weight, acc_sum, bins=20, momentum=0.75):
    """mmdet's ``GHMC.forward`` (mmdet/models/losses/ghm_loss.py), written out: a loop over bins.

    ``acc_sum`` is the module's buffer, updated in place. Returns (loss, weights).
    """
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] += 1e-6
    weights = torch.zeros_like(pred)
    g = torch.abs(pred.sigmoid().detach() - target)
    valid = label_weight > 0
    tot = max(valid.float().sum().item(), 1.0)
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num_in_bin = inds.sum().item()
        if num_in_bin > 0:
            if momentum > 0:
                acc_sum[i] = momentum * acc_sum[i] + (1 - momentum) * num_in_bin
                weights[inds] = tot / acc_sum[i]
            else:
                weights[inds] = tot / num_in_bin
            n += 1
    if n > 0:
        weights = weights / n
    loss = F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum") / tot
    return loss, weights


def random_step(seed, shape=(2, 300, 4)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    targets = (torch.rand(shape, generator=g) < 0.05).float()
    valid = torch.rand(shape[:-1], generator=g) > 0.1  # ignored priors (RetinaNet's label -1)
    return logits, targets, valid


@pytest.mark.parametrize("momentum", [0.75, 0.0])
def test_weights_and_loss_equal_mmdet_ghmc_over_several_steps(momentum):
    """Identical inputs, ω = RCI = 1 -> HCRA-C is mmdet's GHM-C (EMA from zero as mmdet)."""
    harm = GHMHarmonizer(bins=20, momentum=momentum, ema_init="zero")
    # ω = 1 needs u = 1 for positive priors with μ = 1 (1 - 1·(1-1)² = 1 for their negative classes)
    # and u = 0 for background priors (1 - 0 = 1); RCI off.
    hcrac = HCRACLoss(bins=20, momentum=momentum, mu=1.0, use_rci=False, ema_init="zero")
    acc_sum = torch.zeros(20)
    for step in range(4):
        logits, targets, valid = random_step(step)
        label_weight = valid[..., None].expand_as(logits).float()
        ref_loss, ref_w = mmdet_ghmc(logits, targets, label_weight, acc_sum, momentum=momentum)
        beta = harm(torch.abs(logits.sigmoid() - targets), valid[..., None]).beta
        torch.testing.assert_close(beta, ref_w, rtol=1e-5, atol=0)
        u = (targets.sum(-1) > 0).float()
        out = hcrac(logits, targets, u, valid)
        torch.testing.assert_close(out.loss, ref_loss, rtol=1e-5, atol=0)
        if momentum > 0:
            torch.testing.assert_close(harm.acc, acc_sum, rtol=1e-6, atol=0)


def test_without_rci_and_iou_conditioning_hcrac_is_mmdet_ghmc_for_any_iou():
    """The GHM-C diagnostic config: ω = 1 and no RCI leave β alone, whatever u and μ are."""
    hcrac = HCRACLoss(bins=20, momentum=0.75, use_rci=False, use_iou_conditioning=False, ema_init="zero")
    acc_sum = torch.zeros(20)
    for step in range(3):
        logits, targets, valid = random_step(10 + step)
        u = torch.rand(logits.shape[:-1], generator=torch.Generator().manual_seed(step))
        ref_loss, _ = mmdet_ghmc(logits, targets, valid[..., None].expand_as(logits).float(), acc_sum)
        torch.testing.assert_close(hcrac(logits, targets, u, valid).loss, ref_loss, rtol=1e-5, atol=0)
    # with the conditioning on, the same inputs give another loss (ω < 1 somewhere)
    conditioned = HCRACLoss(bins=20, momentum=0.0, use_rci=False)(logits, targets, u, valid).loss
    plain = HCRACLoss(bins=20, momentum=0.0, use_rci=False, use_iou_conditioning=False)(logits, targets, u, valid).loss
    assert conditioned < plain


def test_weights_by_hand_without_ema():
    # M = 4 bins [0,.25) [.25,.5) [.5,.75) [.75,1]; g = .02 .03 -> bin 0 (2), .5 -> bin 2, .97 and 1.0
    # -> bin 3 (2; g = 1 lands in the last bin as in mmdet). tot = 5, n = 3 non-empty bins:
    # β = tot / count / n: bin 0 5/2/3, bin 2 5/1/3, bin 3 5/2/3.
    g = torch.tensor([0.02, 0.03, 0.5, 0.97, 1.0])
    out = GHMHarmonizer(bins=4, momentum=0.0)(g)
    torch.testing.assert_close(out.beta, torch.tensor([5 / 6, 5 / 6, 5 / 3, 5 / 6, 5 / 6]))
    assert out.num_nonempty_bins.item() == 3 and out.tot.item() == 5
    # an invalid element is neither counted nor weighted: tot 4, bins 0 (2), 2 (1), 3 (1)
    out = GHMHarmonizer(bins=4, momentum=0.0)(g, torch.tensor([True, True, True, False, True]))
    torch.testing.assert_close(out.beta, torch.tensor([4 / 6, 4 / 6, 4 / 3, 0.0, 4 / 3]))


def test_ema_seeding_by_hand():
    # Step 1: counts (2, 0, 1, 0) (g = .1 .1 .6), tot 3, n 2.
    #   "zero" (mmdet): acc = .25·counts = (.5, 0, .25, 0) -> β = 3/.5/2 = 3, 3/.25/2 = 6 (4x the no-EMA value)
    #   "first":        acc = counts = (2, 0, 1, 0)       -> β = 3/2/2 = .75, 3/1/2 = 1.5
    # Step 2: counts (0, 1, 1, 0) (g = .3 .6), tot 2, n 2.
    #   "zero":  acc = (.5, .25, .75·.25 + .25 = .4375, 0) -> β(.3) = 2/.25/2 = 4, β(.6) = 2/.4375/2
    #   "first": acc = (2, 1 (first count of bin 1), .75·1 + .25·1 = 1, 0) -> β = 2/1/2 = 1, 1
    s1, s2 = torch.tensor([0.1, 0.1, 0.6]), torch.tensor([0.3, 0.6])
    zero = GHMHarmonizer(bins=4, momentum=0.75, ema_init="zero")
    first = GHMHarmonizer(bins=4, momentum=0.75, ema_init="first")
    torch.testing.assert_close(zero(s1).beta, torch.tensor([3.0, 3.0, 6.0]))
    torch.testing.assert_close(first(s1).beta, torch.tensor([0.75, 0.75, 1.5]))
    torch.testing.assert_close(zero(s2).beta, torch.tensor([4.0, 2 / 0.4375 / 2]))
    torch.testing.assert_close(first(s2).beta, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(first.acc, torch.tensor([2.0, 1.0, 1.0, 0.0]))


def test_one_bin_gives_beta_one_and_cap_and_eval_mode():
    g = torch.full((50,), 0.01)
    h = GHMHarmonizer(bins=20, momentum=0.75)  # "first": settled from the first step
    assert torch.equal(h(g).beta, torch.ones(50))
    # cap: 1 element in bin 19 and 99 in bin 0 -> β = 100/1/2 = 50 and 100/99/2; capped at 10
    g = torch.cat([torch.full((99,), 0.01), torch.tensor([0.99])])
    b = GHMHarmonizer(bins=20, momentum=0.0, beta_cap=10.0)(g).beta
    assert b[-1].item() == 10.0 and b[0].item() == pytest.approx(100 / 99 / 2)
    # eval mode: weights computed, buffer untouched
    h = GHMHarmonizer(bins=20).eval()
    h(g)
    assert torch.count_nonzero(h.acc) == 0


def test_state_round_trips_and_fresh_start_from_a_checkpoint_without_it():
    a = GHMHarmonizer(bins=5)
    a(torch.rand(100))
    b = GHMHarmonizer(bins=5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.acc, b.acc) and torch.count_nonzero(b.acc) > 0
    g = torch.rand(64)
    assert torch.equal(a(g).beta, b(g).beta)
    # A checkpoint without any GHM state (a baseline detector's): nothing reported missing, fresh EMA.
    c = GHMHarmonizer(bins=5)
    result = c.load_state_dict({}, strict=True)
    assert result.missing_keys == [] and torch.count_nonzero(c.acc) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="ema_init"):
        GHMHarmonizer(ema_init="mmdet")
    with pytest.raises(ValueError, match="momentum"):
        GHMHarmonizer(momentum=1.0)


# ----------------------------------------------------------------------------- DDP (gloo, CPU)
def _ghm_on_rank(rank):
    g = torch.Generator().manual_seed(10 + rank)
    h = GHMHarmonizer(bins=10, momentum=0.75)
    betas = [h(torch.rand(40 + 20 * rank, generator=g)).beta.tolist() for _ in range(3)]
    return {"acc": h.acc.tolist(), "beta": betas}


def test_two_process_gloo_counts_are_all_reduced(tmp_path):
    """Each rank's β is what one process holding both ranks' elements computes; both share ``acc``."""
    res = run_gloo(_ghm_on_rank, tmp_path)
    assert res[0]["acc"] == res[1]["acc"]
    # Reference: one process, both ranks' elements. Counts are means over ranks there, i.e. half the
    # sums: β = tot / acc is the same ratio either way.
    gens = [torch.Generator().manual_seed(10 + r) for r in range(2)]
    one = GHMHarmonizer(bins=10, momentum=0.75)
    for step in range(3):
        parts = [torch.rand(40 + 20 * r, generator=gens[r]) for r in range(2)]
        beta = one(torch.cat(parts)).beta
        torch.testing.assert_close(torch.tensor(res[0]["beta"][step]), beta[:40], rtol=1e-5, atol=0)
        torch.testing.assert_close(torch.tensor(res[1]["beta"][step]), beta[40:], rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(res[0]["acc"]), one.acc / 2, rtol=1e-5, atol=0)
