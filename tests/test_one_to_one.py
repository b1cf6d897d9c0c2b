"""DATE o2o assignment: centre prior, POTO quality, restricted Hungarian, fallback (docs/methods.md#date)."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import alignment_det.assigners.one_to_one as o2o
from alignment_det.assigners.one_to_one import (
    center_prior_mask,
    empty_center_fallback_mask,
    hungarian_match,
    one_to_one_assign,
    onenet_cost_assign,
    poto_quality,
)
from alignment_det.utils.boxes import pairwise_iou


def grid(image_hw, strides):
    """Locations ((j+0.5)s, (i+0.5)s) of every level, finest first, and their strides."""
    locs, strs = [], []
    for s in strides:
        h, w = math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s)
        ys, xs = torch.meshgrid(torch.arange(h) * s + s / 2, torch.arange(w) * s + s / 2, indexing="ij")
        locs.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=1).float())
        strs.append(torch.full((h * w,), float(s)))
    return torch.cat(locs), torch.cat(strs)


def full_optimum(quality):
    r, c = linear_sum_assignment(quality.double().numpy(), maximize=True)
    return float(quality.double().numpy()[r, c].sum())


def assert_one_to_one(loc, gt):
    assert loc.dtype == torch.long and gt.dtype == torch.long
    assert loc.numel() == gt.numel()
    assert loc.unique().numel() == loc.numel(), "a location was matched twice"
    assert gt.unique().numel() == gt.numel(), "a GT was matched twice"


# ---------------------------------------------------------------- centre prior


def test_center_prior_mask_by_hand():
    box = torch.tensor([[0.0, 0, 40, 40]])  # centre (20, 20)
    locs = torch.tensor(
        [[4.0, 4], [12, 12], [20, 20], [28, 28], [8, 20], [32, 20], [16, 16], [44, 20]]
    )
    strides = torch.tensor([8.0, 8, 8, 8, 8, 8, 32, 32])
    m = center_prior_mask(locs, strides, box, radius=1.5)
    # stride 8: region (20 +- 12) = (8, 32) clipped to the box (0, 40) -> (8, 32), strict:
    #   (4,4) out; (12,12) (20,20) (28,28) in; x = 8 and x = 32 lie on the border -> out.
    # stride 32: region 20 +- 48 = (-28, 68) clipped to the box -> (0, 40): (16,16) in, (44,20) out.
    assert m[:, 0].tolist() == [False, True, True, True, False, False, True, False]


def test_center_prior_radius_scales_with_stride_and_empty_inputs():
    box = torch.tensor([[0.0, 0, 100, 100]])  # centre (50, 50)
    loc = torch.tensor([[66.0, 50]])  # 16 px right of the centre
    # stride 8: 1.5*8 = 12 < 16 -> out;  stride 16: 24 > 16 -> in
    assert not center_prior_mask(loc, torch.tensor([8.0]), box)[0, 0]
    assert center_prior_mask(loc, torch.tensor([16.0]), box)[0, 0]
    assert center_prior_mask(loc, torch.tensor([8.0]), torch.zeros(0, 4)).shape == (1, 0)


# ---------------------------------------------------------------- POTO quality


def test_poto_quality_by_hand():
    p = torch.tensor([[1 / 32, 1 / 32], [1.0, 0.5]])
    iou = torch.tensor([[1 / 16, 1.0], [2 ** -1.25, 0.0]])
    mask = torch.tensor([[True, False], [True, True]])
    q = poto_quality(p, iou, alpha=0.8, center_mask=mask)
    # (0,0): (1/32)^0.2 * (1/16)^0.8 = 2^-1 * 2^-3.2 = 2^-4.2
    # (0,1): masked -> 0 (it would be (1/32)^0.2 * 1 = 0.5)
    # (1,0): 1^0.2 * (2^-1.25)^0.8 = 2^-1 = 0.5
    # (1,1): IoU 0 -> 0
    expected = torch.tensor([[2 ** -4.2, 0.0], [0.5, 0.0]])
    assert torch.allclose(q, expected, atol=1e-7)
    assert q.dtype == torch.float32
    # without a mask the (0,1) entry is 0.5; alpha=0 is the class term alone, alpha=1 the IoU alone
    assert poto_quality(p, iou)[0, 1].item() == pytest.approx(0.5)
    assert torch.allclose(poto_quality(p, iou, alpha=0.0), p)
    assert torch.allclose(poto_quality(p, iou, alpha=1.0), iou)


def test_poto_quality_is_fp32_and_detached():
    p = torch.rand(5, 3, dtype=torch.float16, requires_grad=False).float().requires_grad_()
    iou = torch.rand(5, 3).half()
    q = poto_quality(p, iou)
    assert q.dtype == torch.float32 and not q.requires_grad


# ---------------------------------------------------------------- Hungarian


def test_hungarian_beats_greedy_by_hand():
    q = torch.tensor([[0.9, 0.8], [0.85, 0.1], [0.0, 0.0]])
    loc, gt = hungarian_match(q)
    # greedy: (0,0)=0.9 then (1,1)=0.1 -> 1.0; optimum: (0,1)+(1,0) = 0.8 + 0.85 = 1.65
    assert sorted(zip(loc.tolist(), gt.tolist())) == [(0, 1), (1, 0)]
    assert q[loc, gt].sum().item() == pytest.approx(1.65)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_restricted_rows_give_full_optimum(seed):
    g = torch.Generator().manual_seed(seed)
    R, G = 400, 25
    q = torch.rand(R, G, generator=g)
    # centre-prior-like sparsity: each GT has ~6 candidate rows, most rows are zero for every GT
    keep = torch.rand(R, G, generator=g) < 0.015
    q = q * keep
    loc, gt = hungarian_match(q)
    assert_one_to_one(loc, gt)
    assert q[loc, gt].double().sum().item() == pytest.approx(full_optimum(q), abs=1e-9)
    # only candidate rows are used; as many pairs as the candidate rows allow
    candidate_rows = (q > 0).any(dim=1)
    assert candidate_rows[loc].all()
    assert loc.numel() == min(int(candidate_rows.sum()), G)


def test_restricted_rows_with_fewer_candidates_than_gts():
    q = torch.zeros(50, 4)
    q[7, 0], q[7, 1], q[30, 2], q[30, 3] = 0.9, 0.5, 0.4, 0.8
    loc, gt = hungarian_match(q)
    # two candidate rows only: row 7 -> GT 0 (0.9), row 30 -> GT 3 (0.8); the full problem adds
    # zero-quality pairs on arbitrary rows, which do not change the total 1.7
    assert sorted(zip(loc.tolist(), gt.tolist())) == [(7, 0), (30, 3)]
    assert q[loc, gt].sum().item() == pytest.approx(full_optimum(q))


def test_hungarian_no_gt_does_not_call_scipy(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("scipy must not be called without GT")

    monkeypatch.setattr(o2o, "linear_sum_assignment", boom)
    loc, gt = hungarian_match(torch.zeros(10, 0))
    assert loc.numel() == 0 and gt.numel() == 0 and loc.dtype == torch.long
    locs, strides = grid((32, 32), [8, 16])
    loc, gt = one_to_one_assign(
        torch.rand(len(locs), 3), torch.rand(len(locs), 4), locs, strides, torch.zeros(0, 4), torch.zeros(0).long()
    )
    assert loc.numel() == 0 and gt.numel() == 0


def test_hungarian_rejects_nan():
    q = torch.tensor([[float("nan"), 0.5]])
    with pytest.raises(ValueError, match="diverged"):
        hungarian_match(q)


# ---------------------------------------------------------------- fallback


def test_fallback_uses_location_inside_box_when_centre_region_is_empty():
    locs, strides = grid((16, 16), [8])  # (4,4) (12,4) (4,12) (12,12)
    box = torch.tensor([[0.0, 0, 16, 16]])
    # radius 0.25 -> region 8 +- 2 = (6, 10): no location inside, but all four are inside the box
    centre = center_prior_mask(locs, strides, box, radius=0.25)
    assert not centre.any()
    mask = empty_center_fallback_mask(centre, locs, strides, box)
    assert mask[:, 0].tolist() == [True, True, True, True]
    # predicted boxes far away: every quality is 0, the GT must still get one of its box locations
    far = torch.tensor([[100.0, 100, 101, 101]]).expand(len(locs), 4)
    loc, gt = one_to_one_assign(
        torch.full((4, 2), 0.5), far, locs, strides, box, torch.tensor([1]), center_radius=0.25
    )
    assert gt.tolist() == [0] and loc.numel() == 1
    x, y = locs[loc[0]].tolist()
    assert 0 < x < 16 and 0 < y < 16


def test_fallback_nearest_location_on_best_fitting_level():
    locs, strides = grid((208, 32), [8, 16])
    tiny = [7.0, 7.0, 7.5, 7.5]  # 0.5 px: no location inside; half side 0.25 <= 8*8 -> stride 8
    thin = [7.2, 0.0, 7.7, 200.0]  # 0.5 x 200: half long side 100 in (8*8, 8*16] -> stride 16
    boxes = torch.tensor([tiny, thin])
    centre = center_prior_mask(locs, strides, boxes)
    assert not centre.any(dim=0).any()
    mask = empty_center_fallback_mask(centre, locs, strides, boxes)
    assert mask.sum(dim=0).tolist() == [1, 1]
    # tiny: centre (7.25, 7.25); stride-8 neighbours (4,4) at 3.25*sqrt2 and (12,12) at 4.75*sqrt2 -> (4,4)
    assert locs[mask[:, 0]].tolist() == [[4.0, 4.0]] and strides[mask[:, 0]].item() == 8
    # thin: centre (7.45, 100); on stride 16 (x = 8, 24; y = 8 + 16k) nearest is (8, 104) at ~4.04 px,
    # although the stride-8 location (4, 100) is closer (3.45 px): the level is chosen first
    assert locs[mask[:, 1]].tolist() == [[8.0, 104.0]] and strides[mask[:, 1]].item() == 16
    far = torch.tensor([[500.0, 500, 501, 501]]).expand(len(locs), 4)
    loc, gt = one_to_one_assign(torch.full((len(locs), 3), 0.3), far, locs, strides, boxes, torch.tensor([0, 2]))
    got = dict(zip(gt.tolist(), locs[loc].tolist()))
    assert got == {0: [4.0, 4.0], 1: [8.0, 104.0]}


def test_fallback_off_leaves_mask_and_columns_empty():
    locs, strides = grid((16, 16), [8])
    box = torch.tensor([[7.0, 7.0, 7.5, 7.5]])
    far = torch.tensor([[100.0, 100, 101, 101]]).expand(len(locs), 4)
    loc, gt = one_to_one_assign(
        torch.full((4, 1), 0.5), far, locs, strides, box, torch.tensor([0]), empty_center_fallback=False
    )
    assert loc.numel() == 0  # no candidate row at all: unmatched rather than an arbitrary location


# ---------------------------------------------------------------- end to end per image


def _random_image(seed, image_hw, strides, num_gt, num_classes=5):
    g = torch.Generator().manual_seed(seed)
    locs, strs = grid(image_hw, strides)
    H, W = image_hw
    xy = torch.rand(num_gt, 2, generator=g) * torch.tensor([W, H])
    wh = torch.rand(num_gt, 2, generator=g) * 60 + 2
    gt = torch.cat((xy, xy + wh), dim=1)
    gt[:, 0::2] = gt[:, 0::2].clamp(0, W)
    gt[:, 1::2] = gt[:, 1::2].clamp(0, H)
    cls = torch.randint(0, num_classes, (num_gt,), generator=g)
    probs = torch.rand(len(locs), num_classes, generator=g)
    ltrb = torch.rand(len(locs), 4, generator=g) * 4 * strs[:, None]
    pred = torch.cat((locs - ltrb[:, :2], locs + ltrb[:, 2:]), dim=1)
    return probs, pred, locs, strs, gt, cls


def _full_quality(probs, pred, locs, strs, gt, cls):
    mask = empty_center_fallback_mask(center_prior_mask(locs, strs, gt), locs, strs, gt)
    return poto_quality(probs[:, cls], pairwise_iou(pred, gt), 0.8, mask), mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_distinct_location_per_gt_and_optimal(seed):
    probs, pred, locs, strs, gt, cls = _random_image(seed, (128, 160), [8, 16, 32, 64, 128], num_gt=12)
    loc, g = one_to_one_assign(probs, pred, locs, strs, gt, cls)
    assert_one_to_one(loc, g)
    assert sorted(g.tolist()) == list(range(12))  # every GT matched
    q, mask = _full_quality(probs, pred, locs, strs, gt, cls)
    assert mask[loc, g].all()  # matched inside the centre prior (or the fallback)
    assert q[loc, g].double().sum().item() == pytest.approx(full_optimum(q), abs=1e-6)


def test_more_gts_than_locations():
    locs, strides = grid((16, 16), [8])  # R = 4
    boxes = torch.tensor([[0.0, 0, 16, 16]]).repeat(6, 1)  # 6 duplicates covering every location
    boxes[:, 2:] -= torch.arange(6.0)[:, None] * 0.1  # distinct but all contain the 4 locations
    pred = torch.tensor([[0.0, 0, 16, 16]]).expand(4, 4)
    loc, gt = one_to_one_assign(torch.full((4, 2), 0.5), pred, locs, strides, boxes, torch.zeros(6).long())
    assert_one_to_one(loc, gt)
    assert loc.numel() == 4 and sorted(loc.tolist()) == [0, 1, 2, 3]


def test_duplicate_gts_get_different_locations():
    probs, pred, locs, strs, gt, cls = _random_image(7, (96, 96), [8, 16, 32], num_gt=1)
    gt2 = gt.repeat(2, 1)
    loc, g = one_to_one_assign(probs, pred, locs, strs, gt2, cls.repeat(2))
    assert_one_to_one(loc, g)
    assert loc.numel() == 2


def test_300_gts_matched_correctly():
    probs, pred, locs, strs, gt, cls = _random_image(11, (512, 512), [8, 16, 32, 64, 128], num_gt=300)
    loc, g = one_to_one_assign(probs, pred, locs, strs, gt, cls, gt_chunk_size=64)  # several GT chunks
    assert_one_to_one(loc, g)
    q, mask = _full_quality(probs, pred, locs, strs, gt, cls)
    assert mask[loc, g].all()
    assert loc.numel() == min(int(mask.any(dim=1).sum()), 300)
    assert q[loc, g].double().sum().item() == pytest.approx(full_optimum(q), abs=1e-6)


def test_matching_runs_on_detached_inputs_and_returns_input_device():
    probs, pred, locs, strs, gt, cls = _random_image(3, (64, 64), [8, 16], num_gt=3)
    probs.requires_grad_()
    pred.requires_grad_()
    loc, g = one_to_one_assign(probs, pred, locs, strs, gt, cls)
    assert loc.device == locs.device and not loc.requires_grad
    assert np.all(np.diff(loc.numpy()) > 0)  # sorted by location index


# ----------------------------------------------------------------------------- OneNet cost matcher
def test_onenet_cost_matches_each_gt_to_the_prediction_that_fits_it():
    # Predictions 0 and 1 are exactly GT 1 and GT 0 (swapped order), same class score:
    # L1 = 0 and GIoU = 1 on the swapped pairs, so the minimum-cost matching is 0->1, 1->0.
    gts = torch.tensor([[0.0, 0, 20, 20], [50, 50, 90, 80]])
    preds = torch.stack([gts[1], gts[0]])
    probs = torch.full((2, 3), 0.5)
    loc, gt = onenet_cost_assign(probs, preds, gts, torch.tensor([0, 2]), (100, 100))
    assert sorted(zip(loc.tolist(), gt.tolist())) == [(0, 1), (1, 0)]


def test_onenet_cost_classification_decides_between_equal_boxes():
    # Both predictions have the same box (equal L1 and GIoU costs), so the focal term
    # (pos - neg, decreasing in p) decides: each GT goes to the location most confident
    # about its class.
    gts = torch.tensor([[10.0, 10, 40, 40], [10, 10, 40, 40]])
    preds = torch.tensor([[12.0, 12, 38, 38], [12, 12, 38, 38]])
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9]])  # location 0 likes class 0, location 1 class 1
    loc, gt = onenet_cost_assign(probs, preds, gts, torch.tensor([1, 0]), (64, 64))
    assert sorted(zip(loc.tolist(), gt.tolist())) == [(0, 1), (1, 0)]


def test_onenet_cost_edge_cases():
    probs, preds = torch.rand(3, 2), torch.tensor([[0.0, 0, 5, 5], [5, 5, 10, 10], [0, 0, 10, 10]])
    loc, gt = onenet_cost_assign(probs, preds, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (10, 10))
    assert loc.numel() == 0 and gt.numel() == 0
    many = torch.tensor([[0.0, 0, 4, 4]] * 5)
    loc, gt = onenet_cost_assign(probs, preds, many, torch.zeros(5, dtype=torch.long), (10, 10))
    assert loc.numel() == 3 and len(set(loc.tolist())) == 3 and len(set(gt.tolist())) == 3
