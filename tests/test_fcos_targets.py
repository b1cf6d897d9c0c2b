"""FCOS o2m targets with mmdet FCOSHead semantics (docs/methods.md#date-losses)."""
import math

import pytest
import torch

from alignment_det.assigners.fcos_targets import (
    MMDET_FCOS_REGRESS_RANGES,
    centerness_targets,
    fcos_targets,
)

K = 3  # background label


def run(locs, levels, boxes, classes, **kw):
    return fcos_targets(
        torch.tensor(locs, dtype=torch.float32),
        torch.tensor(levels),
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(classes, dtype=torch.long),
        K,
        **kw,
    )


def test_level_ranges_by_hand():
    box = [[0.0, 0, 200, 200]]
    locs = [[100, 100], [100, 100], [30, 100], [30, 100], [10, 100], [10, 100]]
    levels = [1, 2, 1, 0, 2, 3]
    t = run(locs, levels, box, [2])
    # (100,100): ltrb (100,100,100,100), max 100: level 1 range [64,128] -> pos; level 2 [128,256] -> neg
    # (30,100): ltrb (30,100,170,100), max 170: level 1 -> neg (>128); level 0 [-1,64] -> neg
    # (10,100): ltrb (10,100,190,100), max 190: level 2 -> pos; level 3 [256,512] -> neg
    assert t.labels.tolist() == [2, K, K, K, 2, K]
    assert t.gt_index.tolist() == [0, -1, -1, -1, 0, -1]
    assert t.ltrb[0].tolist() == [100, 100, 100, 100] and t.ltrb[4].tolist() == [10, 100, 190, 100]
    assert t.ltrb[1].tolist() == [0, 0, 0, 0] and t.centerness[1].item() == 0


def test_range_bounds_are_closed_as_in_mmdet():
    # (64, 50) in (0,0,100,100): ltrb (64, 50, 36, 50), max exactly 64 -> positive on level 0 (<= 64)
    # and on level 1 (>= 64). The last level is unbounded: max 1000 on level 4 -> positive.
    t = run([[64, 50], [64, 50], [1000, 1000]], [0, 1, 4], [[0.0, 0, 100, 100], [0, 0, 2000, 2000]], [0, 1])
    assert t.labels.tolist() == [0, 0, 1]
    assert MMDET_FCOS_REGRESS_RANGES[0] == (-1.0, 64.0) and math.isinf(MMDET_FCOS_REGRESS_RANGES[-1][1])


def test_inside_box_is_strict_and_no_centre_sampling():
    box = [[0.0, 0, 100, 100]]
    # (0, 50) on the left border: l = 0 -> negative; (101, 50) outside; (2, 50) near the border:
    # ltrb (2, 50, 98, 50), max 98 on level 1 -> positive (no centre sampling would reject it)
    t = run([[0, 50], [101, 50], [2, 50]], [0, 0, 1], box, [1])
    assert t.labels.tolist() == [K, K, 1]


def test_centre_sampling_keeps_only_the_centre_region_by_hand():
    # box (0,0,100,100), centre (50,50); stride 16, radius 1.5 -> region (26,26)-(74,74), strict.
    # (2,50): inside the box, outside the region -> background only with centre sampling.
    # (30,50): ltrb (30,50,70,50), max 70 in level 1's [64,128] -> positive, target the WHOLE box.
    # (26,50): on the region's border -> background (strict).
    # (36,50) on level 0 (stride 8): ltrb max 64 -> in range; its region is (38,62), so the radius
    # follows the location's own stride: background there, though inside level 1's region.
    box, locs, levels = [[0.0, 0, 100, 100]], [[2, 50], [30, 50], [26, 50], [36, 50]], [1, 1, 1, 0]
    strides = torch.tensor([16.0, 16, 16, 8])
    off = run(locs, levels, box, [1])
    on = run(locs, levels, box, [1], center_sampling_radius=1.5, strides=strides)
    assert off.labels.tolist() == [1, 1, 1, 1]
    assert on.labels.tolist() == [K, 1, K, K]
    assert on.ltrb[1].tolist() == [30, 50, 70, 50]
    # the region is clipped to the box: a thin box (0,40,100,44) keeps y in (40,44), not (18,66)
    thin = run([[50, 42], [50, 45]], [0, 0], [[0.0, 40, 100, 44]], [0], center_sampling_radius=1.5,
               strides=torch.tensor([16.0, 16]))
    assert thin.labels.tolist() == [0, K]
    with pytest.raises(ValueError, match="needs strides"):
        run(locs, levels, box, [1], center_sampling_radius=1.5)


def test_ambiguous_location_takes_smallest_area_gt():
    big, small = [0.0, 0, 100, 100], [40.0, 40, 60, 60]
    # (50,50) level 0: big ltrb max 50, small max 10, both in [-1,64] -> smaller area (400 < 10000)
    t = run([[50, 50]], [0], [big, small], [1, 2])
    assert t.labels.tolist() == [2] and t.gt_index.tolist() == [1]
    assert t.ltrb[0].tolist() == [10, 10, 10, 10] and t.centerness[0].item() == pytest.approx(1.0)
    # same boxes in the other order: the answer follows the area, not the index
    t = run([[50, 50]], [0], [small, big], [2, 1])
    assert t.labels.tolist() == [2] and t.gt_index.tolist() == [0]


def test_equal_area_tie_goes_to_first_gt_across_chunks():
    a, b = [0.0, 0, 100, 100], [10.0, 10, 110, 110]  # same area 10000; (50,50) inside both, max 60/60
    for chunk in (1, 256):
        t = run([[50, 50]], [0], [a, b], [0, 1], gt_chunk_size=chunk)
        assert t.gt_index.tolist() == [0] and t.labels.tolist() == [0]


def test_centerness_by_hand():
    # (20, 30) in (0,0,100,100): ltrb (20,30,80,70), max 80 on level 1 -> positive
    # centerness = sqrt(20/80 * 30/70) = sqrt(3/28)
    t = run([[20, 30]], [1], [[0.0, 0, 100, 100]], [0])
    assert t.centerness[0].item() == pytest.approx(math.sqrt(3 / 28), rel=1e-6)
    assert centerness_targets(torch.tensor([[1.0, 4, 4, 1]])).item() == pytest.approx(0.25)  # sqrt(1/4*1/4)


def test_no_gt_all_background():
    t = fcos_targets(torch.rand(7, 2) * 50, torch.zeros(7, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0).long(), K)
    assert t.labels.tolist() == [K] * 7 and t.gt_index.tolist() == [-1] * 7
    assert not t.ltrb.any() and not t.centerness.any()


def brute_force(locs, levels, boxes, classes, ranges, strides=None, radius=None):
    """Location-by-location, GT-by-GT reading of mmdet FCOSHead._get_target_single (with
    ``center_sampling`` when ``radius`` is given: the box shrunk to centre ± radius·stride)."""
    labels, gt_index = [], []
    for (x, y), lvl in zip(locs.tolist(), levels.tolist()):
        lo, hi = ranges[lvl]
        best, best_area = -1, math.inf
        for g, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            d = (x - x0, y - y0, x1 - x, y1 - y)
            area = (x1 - x0) * (y1 - y0)
            inside = min(d) > 0
            if radius is not None:
                cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, radius * strides[lvl]
                cb = (x - max(cx - r, x0), y - max(cy - r, y0), min(cx + r, x1) - x, min(cy + r, y1) - y)
                inside = min(cb) > 0
            if inside and lo <= max(d) <= hi and area < best_area:
                best, best_area = g, area
        gt_index.append(best)
        labels.append(classes[best].item() if best >= 0 else K)
    return labels, gt_index


@pytest.mark.parametrize("radius", [None, 1.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_matches_brute_force(seed, radius):
    g = torch.Generator().manual_seed(seed)
    strides = [8, 16, 32, 64, 128]
    locs, levels = [], []
    for lvl, s in enumerate(strides):
        n = math.ceil(320 / s)
        ys, xs = torch.meshgrid(torch.arange(n) * s + s / 2, torch.arange(n) * s + s / 2, indexing="ij")
        locs.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), 1))
        levels.append(torch.full((n * n,), lvl))
    locs, levels = torch.cat(locs).float(), torch.cat(levels).long()
    xy = torch.rand(20, 2, generator=g) * 300
    wh = torch.rand(20, 2, generator=g) * 300 + 1
    boxes = torch.cat((xy, xy + wh), 1)
    classes = torch.randint(0, K, (20,), generator=g)
    loc_strides = torch.tensor(strides, dtype=torch.float32)[levels]
    t = fcos_targets(locs, levels, boxes, classes, K, gt_chunk_size=7, center_sampling_radius=radius, strides=loc_strides)
    labels, gt_index = brute_force(locs, levels, boxes, classes, MMDET_FCOS_REGRESS_RANGES, strides, radius)
    assert t.labels.tolist() == labels and t.gt_index.tolist() == gt_index
    pos = t.gt_index >= 0
    assert pos.sum() > (20 if radius else 50)  # the comparison is not vacuous
    assert (t.ltrb[pos] > 0).all() and (t.centerness[pos] > 0).all() and (t.centerness[pos] <= 1).all()
