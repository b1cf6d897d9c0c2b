"""ATSS / EATSS assignment on plain tensors (docs/methods.md#atss-assignment). No Detectron2."""
import statistics

import pytest
import torch

from alignment_det.assigners.atss import INSIDE_MARGIN, atss_assign, square_anchor_grid


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def square(cx, cy, side):
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


# Two "levels" of hand-placed anchors and one GT, [0, 0, 40, 40] (centre (20, 20), area 1600).
#   level 0, side 10: a (20,20) d=0, c (22,20) d=2, b (30,20) d=10, far (100,100)
#   level 1, side 40: L1a (24,20) d=4, L1b (64,20) d=44
LEVEL0 = [square(20, 20, 10), square(22, 20, 10), square(30, 20, 10), square(100, 100, 10)]
LEVEL1 = [square(24, 20, 40), square(64, 20, 40)]
ANCHORS = boxes(*LEVEL0, *LEVEL1)
NPL = [4, 2]
GT = boxes([0, 0, 40, 40])
A, C, B, FAR, L1A, L1B = range(6)


def test_atss_threshold_by_hand():
    # topk = 3: level 0 -> a, c, b (far excluded); level 1 has only 2 anchors -> min(3, 2) = both.
    # IoUs: the three side-10 squares lie inside the GT: 100 / 1600 each;
    # L1a = [4, 0, 44, 40]: overlap 36 x 40 = 1440, union 1600 + 1600 - 1440 = 1760; L1b: 0.
    ious = [100 / 1600] * 3 + [1440 / 1760, 0.0]
    thr = statistics.mean(ious) + statistics.stdev(ious)  # unbiased std as torch.std
    assert 100 / 1600 < thr <= 1440 / 1760  # = 0.547: only L1a passes
    r = atss_assign(ANCHORS, NPL, GT, topk=3)
    assert r.gt_index.tolist() == [-1, -1, -1, -1, 0, -1]
    assert r.num_atss.item() == 1 and r.num_extra.item() == 0


def test_eatss_adds_the_best_ranked_pool_member_by_hand():
    # P = {L1a} at distance 4 -> Dis_f = 4. Pool: candidates inside the GT, rejected by the IoU test,
    # within distance 4: a (d 0) and c (d 2); b is at 10. Ranks IoU * (1 - d / (4 + 1e-6)):
    #   a: 0.0625 * 1 = 0.0625,  c: 0.0625 * (1 - 2/4) = 0.03125  -> l = 1 adds a.
    r = atss_assign(ANCHORS, NPL, GT, topk=3, num_extra=1)
    assert r.gt_index.tolist() == [0, -1, -1, -1, 0, -1]
    assert r.num_atss.item() == 1 and r.num_extra.item() == 1
    # #E_g = 2 < l = 3: all of the pool is added, nothing else (b is beyond Dis_f).
    r = atss_assign(ANCHORS, NPL, GT, topk=3, num_extra=3)
    assert r.gt_index.tolist() == [0, 0, -1, -1, 0, -1] and r.num_extra.item() == 2


def test_eatss_rank_by_predicted_box_iou():
    # "pred": rank with the IoU of another box per prior. Give c a predicted box equal to the GT
    # (IoU 1): c scores 1 * (1 - 2/4) = 0.5 > a's 0.0625 * 1 (a's rank box is its anchor).
    rank = ANCHORS.clone()
    rank[C] = GT[0]
    r = atss_assign(ANCHORS, NPL, GT, topk=3, num_extra=1, rank_boxes=rank)
    assert r.gt_index.tolist() == [-1, 0, -1, -1, 0, -1]


def test_no_expansion_without_atss_positive():
    # A GT whose candidates all fail (its centre far from every anchor centre that lies inside it):
    # a thin box around (100, 60) holds no anchor centre -> P = ∅ -> nothing to expand from.
    gt = boxes([95, 55, 105, 65])
    r = atss_assign(ANCHORS, NPL, gt, topk=3, num_extra=3)
    assert r.gt_index.tolist() == [-1] * 6 and r.num_atss.item() == 0 and r.num_extra.item() == 0


def test_highest_iou_wins_and_exact_tie_goes_to_lowest_gt_index():
    # GT 0 = [0,0,40,40] as above (L1a IoU 1440/1760 = 0.818); GT 1 = [4,0,44,40] equals L1a (IoU 1).
    # L1a is a positive of both; GT 1 has the higher IoU.
    gts = boxes([0, 0, 40, 40], [4, 0, 44, 40])
    r = atss_assign(ANCHORS, NPL, gts, topk=3)
    assert r.gt_index[L1A].item() == 1
    # The same GT twice: identical IoUs everywhere -> every positive goes to index 0, any chunking.
    dup = boxes([0, 0, 40, 40], [0, 0, 40, 40])
    for chunk in (1, 2):
        r = atss_assign(ANCHORS, NPL, dup, topk=3, gt_chunk_size=chunk)
        assert r.gt_index.tolist() == [-1, -1, -1, -1, 0, -1]
        assert r.num_atss.item() == 2  # the pair counts see both GTs


def test_centre_must_be_inside_by_the_margin():
    # One anchor (side 64, centre (32, 32)) and its top-1 candidate set: std = 0, thr = its own IoU,
    # so only the inside test decides. The centre is exactly on the left edge, then half the margin
    # inside (not enough), then twice the margin inside.
    anchors = boxes(square(32, 32, 64))
    for x0, positive in ((32.0, False), (32.0 - INSIDE_MARGIN / 2, False), (32.0 - 2 * INSIDE_MARGIN, True)):
        r = atss_assign(anchors, [1], boxes([x0, 0, 80, 64]), topk=9)
        assert (r.gt_index[0].item() == 0) is positive, x0


def random_boxes(n, height, width, seed=0, min_side=2.0, max_side=200.0):
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * (max_side - min_side) + min_side
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], 1)


def test_square_anchor_grid_by_hand():
    # 16 x 24 image, strides 8 and 16, scale 2, offset 0.5: level 0 has 2 x 3 cells centred at
    # x in (4, 12, 20), y in (4, 12), squares of side 16; level 1 has 1 x 2 cells at (8|24, 8), side 32.
    a, npl = square_anchor_grid(16, 24, strides=(8, 16), scale=2.0)
    assert npl == [6, 2]
    assert a[:3].tolist() == [[-4, -4, 12, 12], [4, -4, 20, 12], [12, -4, 28, 12]]
    assert a[3].tolist() == [-4, 4, 12, 20]
    assert a[6:].tolist() == [[-8, -8, 24, 24], [8, -8, 40, 24]]
    # mmdet's anchors (offset 0): the first centre is the image corner
    assert square_anchor_grid(16, 24, strides=(8,), scale=2.0, offset=0.0)[0][0].tolist() == [-8, -8, 8, 8]


def test_level_with_fewer_than_topk_anchors():
    # 64x64 image: levels of 64, 16, 4, 1, 1 anchors; topk 9 -> 9 + 9 + 4 + 1 + 1 candidates.
    anchors, npl = square_anchor_grid(64, 64)
    assert npl == [64, 16, 4, 1, 1]
    r = atss_assign(anchors, npl, boxes([10, 10, 50, 50]), topk=9)
    assert (r.gt_index >= 0).any()
    # only one anchor in the whole image: a single candidate (std 0 by definition, not NaN)
    r = atss_assign(anchors[-1:], [1], boxes([0, 0, 100, 100]), topk=9)  # its centre (64, 64) is inside
    assert r.gt_index.tolist() == [0]


def test_empty_and_degenerate_ground_truth():
    anchors, npl = square_anchor_grid(128, 128)
    r = atss_assign(anchors, npl, torch.zeros(0, 4), num_extra=3)
    assert (r.gt_index == -1).all() and r.num_atss.item() == 0 and r.num_extra.item() == 0
    # zero width, a 0.5 px box between grid points (no anchor centre inside), a box outside the image
    degenerate = boxes([10, 10, 10, 30], [10.2, 10.2, 10.7, 10.7], [500, 500, 540, 540])
    r = atss_assign(anchors, npl, degenerate, num_extra=3)
    assert (r.gt_index == -1).all() and r.num_atss.item() == 0 and r.num_extra.item() == 0
    # a 0.5 px box that does hold a prior centre ((16, 16) on the stride-32 level) 0.1 px inside: it may
    # be positive, and then only on anchors centred at that point.
    r = atss_assign(anchors, npl, boxes([15.9, 15.9, 16.4, 16.4]))
    ctr = (anchors[r.gt_index == 0, :2] + anchors[r.gt_index == 0, 2:]) / 2
    assert (ctr == 16).all()


def test_bad_input_is_a_clear_error():
    anchors, npl = square_anchor_grid(64, 64)
    with pytest.raises(ValueError, match="NaN or inf"):
        atss_assign(anchors, npl, boxes([0, 0, float("nan"), 10]))
    with pytest.raises(ValueError, match="sums to"):
        atss_assign(anchors, npl[:-1], boxes([0, 0, 10, 10]))
    with pytest.raises(ValueError, match="rank_boxes"):
        atss_assign(anchors, npl, boxes([0, 0, 10, 10]), num_extra=3, rank_boxes=anchors[:5])


def _single_gt_positives(anchors, npl, gt, **kw):
    return set(torch.nonzero(atss_assign(anchors, npl, gt[None], **kw).gt_index == 0).flatten().tolist())


def test_eatss_adds_at_most_l_priors_per_gt_and_never_outside_it():
    """Per GT, EATSS = ATSS's positives + at most l priors, all with centre inside the GT."""
    anchors, npl = square_anchor_grid(256, 320)
    ctr = (anchors[:, :2] + anchors[:, 2:]) / 2
    gts = random_boxes(40, 256, 320, seed=3, min_side=4.0)
    added = []
    for g in gts:  # one GT at a time, so that step 4 cannot move a prior to another GT
        base = _single_gt_positives(anchors, npl, g)
        for l in (1, 3):
            ext = _single_gt_positives(anchors, npl, g, num_extra=l)
            assert base <= ext and len(ext - base) <= l
            for a in ext - base:
                assert g[0] < ctr[a, 0] < g[2] and g[1] < ctr[a, 1] < g[3]
            if l == 3:
                added.append(len(ext - base))
    assert sum(added) > 0  # the expansion does happen on random boxes (else the test proves nothing)
    # All GTs together: the pair counter agrees with the bound, and every positive is inside its GT.
    r = atss_assign(anchors, npl, gts, num_extra=3)
    assert 0 < r.num_extra.item() <= 3 * len(gts)
    pos = r.gt_index >= 0
    g = gts[r.gt_index[pos]]
    c = ctr[pos]
    assert ((c[:, 0] > g[:, 0]) & (c[:, 0] < g[:, 2]) & (c[:, 1] > g[:, 1]) & (c[:, 1] < g[:, 3])).all()


def test_chunking_does_not_change_the_result():
    anchors, npl = square_anchor_grid(256, 256)
    gts = random_boxes(150, 256, 256, seed=1)
    ref = atss_assign(anchors, npl, gts, num_extra=3, gt_chunk_size=1024)
    for chunk in (1, 7, 64):
        r = atss_assign(anchors, npl, gts, num_extra=3, gt_chunk_size=chunk)
        assert torch.equal(r.gt_index, ref.gt_index)
        assert r.num_atss.item() == ref.num_atss.item() and r.num_extra.item() == ref.num_extra.item()


def test_thousand_boxes_on_an_800x1333_image():
    """docs/methods.md#hcral-edge-cases: 1,000 GTs on the ~22k priors of an 800x1333 input (chunked; speed is in benchmarks/)."""
    anchors, npl = square_anchor_grid(800, 1344)
    gts = random_boxes(1000, 800, 1344, seed=2, min_side=8.0)
    r = atss_assign(anchors, npl, gts, num_extra=3)
    pos = r.gt_index >= 0
    assert pos.sum() > 1000  # several positives per GT survive the highest-IoU rule
    assert r.gt_index.max().item() < 1000
    # ATSS selects ~ mean + std: about 20% of the ~45 candidates per GT (9 per level).
    assert 2 <= r.num_atss.item() / 1000 <= 20
