"""MAL anchor bags and the all -> top-1 selection schedule (docs/methods.md#mal-anchor-bags)."""
import pytest
import torch

from alignment_det.assigners.mal_bags import (
    bag_eligible,
    build_anchor_bags,
    effective_bag_size,
    selection_count,
)


def _anchors():
    return torch.tensor(
        [
            [0.0, 0, 10, 10],  # a0
            [0.0, 0, 10, 5],  # a1
            [5.0, 5, 15, 15],  # a2
            [20.0, 20, 30, 30],  # a3
        ]
    )


def test_bags_by_hand():
    gts = torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 15, 15]])
    # GT0 vs a0..a3: 1, 50/100 = .5, 25/175 = .143, 0  -> top-2 = [a0, a1]
    # GT1 vs a0..a3: 25/175 = .143, 0 (a1 ends at y=5), 1, 0 -> top-2 = [a2, a0]
    bags = build_anchor_bags(gts, _anchors(), 2)
    assert bags.dtype == torch.long
    assert bags.tolist() == [[0, 1], [2, 0]]


def test_bag_larger_than_anchor_set_is_clipped():
    gts = torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 15, 15]])
    bags = build_anchor_bags(gts, _anchors(), 50)
    # k_bag = min(50, R=4): every anchor exactly once, best first
    assert bags.shape == (2, 4)
    assert [sorted(r) for r in bags.tolist()] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert bags[:, 0].tolist() == [0, 2]
    assert effective_bag_size(50, 4) == 4 and effective_bag_size(40, 1000) == 40


def test_bags_without_gt():
    bags = build_anchor_bags(torch.zeros((0, 4)), _anchors(), 3)
    assert bags.shape == (0, 3) and bags.dtype == torch.long


def test_bags_reject_bad_arguments():
    with pytest.raises(ValueError, match="bag_size"):
        build_anchor_bags(torch.zeros((1, 4)), _anchors(), 0)
    with pytest.raises(ValueError, match="chunk_size"):
        build_anchor_bags(torch.zeros((1, 4)), _anchors(), 2, chunk_size=0)


def _random_boxes(n, size, gen, min_wh=2.0, max_wh=60.0):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = min_wh + torch.rand(n, 2, generator=gen) * (max_wh - min_wh)
    return torch.cat([xy, xy + wh], dim=1)


def test_chunking_gives_identical_bags_and_bags_are_top_iou():
    gen = torch.Generator().manual_seed(0)
    anchors = _random_boxes(700, 200, gen)
    gts = _random_boxes(150, 200, gen)
    ref = build_anchor_bags(gts, anchors, 9, chunk_size=10_000)
    for chunk in (1, 7, 64):
        assert torch.equal(build_anchor_bags(gts, anchors, 9, chunk_size=chunk), ref)
    # the selected IoUs are the 9 largest of each row (checked against a full sort)
    from alignment_det.utils.boxes import pairwise_iou

    iou = pairwise_iou(gts, anchors)
    assert torch.allclose(iou.gather(1, ref), iou.sort(dim=1, descending=True).values[:, :9])


def test_selection_count_by_hand():
    # m = clamp(floor(k (1 - lambda)) + 1, 1, k)
    assert selection_count(50, 0.0) == 50  # floor(50) + 1 = 51 -> clamped to 50
    assert selection_count(50, 0.02) == 50  # floor(49) + 1
    assert selection_count(50, 0.5) == 26  # floor(25) + 1
    assert selection_count(50, 0.98) == 2  # floor(1) + 1
    assert selection_count(50, 0.99) == 1  # floor(0.5) + 1
    assert selection_count(50, 1.0) == 1  # floor(0) + 1
    assert selection_count(40, 0.3) == 29  # floor(28) + 1
    # lambda is clamped to [0, 1]
    assert selection_count(50, 1.7) == 1 and selection_count(50, -0.5) == 50
    # "all" mode of the released code
    assert selection_count(50, None) == 50
    assert selection_count(0, 0.5) == 0


def test_selection_count_is_exact_for_t_over_T():
    # 40 * (1 - 72000/90000) evaluates to 7.999999999999998 in floats; the exact value 8 gives m = 9.
    assert selection_count(40, 72000 / 90000) == 9
    # and it agrees with integer arithmetic over a whole schedule
    k, T = 40, 90000
    for t in range(0, T + 1, 250):
        assert selection_count(k, t / T) == min(max(k * (T - t) // T + 1, 1), k)


def test_selection_count_is_monotone_from_bag_to_one():
    counts = [selection_count(40, t / 1000) for t in range(1001)]
    assert counts[0] == 40 and counts[-1] == 1
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_bag_eligible_excludes_sub_pixel_boxes():
    boxes = torch.tensor(
        [
            [0.0, 0, 0.5, 10],  # width 0.5 px -> excluded
            [0.0, 0, 10, 0.99],  # height 0.99 px -> excluded
            [0.0, 0, 1, 1],  # exactly 1 px -> kept
            [3.0, 4, 30, 40],
        ]
    )
    assert bag_eligible(boxes).tolist() == [False, False, True, True]
