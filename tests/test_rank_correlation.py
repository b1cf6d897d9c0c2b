"""Torch Spearman of the training-time alignment signal, against values worked out by hand."""
import math

import pytest
import torch

from alignment_det.utils.rank_correlation import average_ranks, spearman_correlation


def test_average_ranks_ties_by_hand():
    # sorted: 5 (rank 1), 10 (rank 2), 20, 20 (ranks 3 and 4 -> 3.5 each)
    assert average_ranks(torch.tensor([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks(torch.tensor([7.0, 7.0, 7.0])).tolist() == [2.0, 2.0, 2.0]


def test_spearman_by_hand_with_ties():
    # ranks x = [4, 1.5, 3, 1.5], y = [4, 2.5, 2.5, 1]; deviations from 2.5: [1.5, -1, .5, -1] and
    # [1.5, 0, 0, -1.5] -> 3.75 / sqrt(4.5 * 4.5) = 5/6
    x = torch.tensor([0.9, 0.5, 0.7, 0.5])
    y = torch.tensor([0.8, 0.6, 0.6, 0.3])
    assert spearman_correlation(x, y).item() == pytest.approx(5 / 6)
    # Perfectly (anti-)monotonic -> exactly +-1, whatever the spacing.
    assert spearman_correlation(torch.tensor([1.0, 2, 30]), torch.tensor([0.1, 0.2, 0.25])).item() == pytest.approx(1)
    assert spearman_correlation(torch.tensor([1.0, 2, 30]), torch.tensor([3.0, 2, 1])).item() == pytest.approx(-1)


def test_spearman_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (200,), generator=g).float()  # many ties
    y = x + torch.rand(200, generator=g) * 3
    assert spearman_correlation(x, y).item() == pytest.approx(stats.spearmanr(x.numpy(), y.numpy())[0], abs=1e-9)


def test_spearman_undefined_cases_return_none():
    assert spearman_correlation(torch.tensor([]), torch.tensor([])) is None
    assert spearman_correlation(torch.tensor([0.3]), torch.tensor([0.7])) is None  # fewer than 2 positives
    assert spearman_correlation(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.1, 0.2, 0.3])) is None  # constant
    # Pairs with a NaN or inf are dropped: what is left is ([.1, .2, .4], [1, 2, 0]) -> ranks
    # [1, 2, 3] and [2, 3, 1]: deviations [-1, 0, 1], [0, 1, -1] -> -1 / sqrt(2 * 2) = -0.5
    x = torch.tensor([0.1, float("nan"), 0.2, 0.3, 0.4])
    y = torch.tensor([1.0, 5.0, 2.0, float("inf"), 0.0])
    assert spearman_correlation(x, y).item() == pytest.approx(-0.5)
    assert spearman_correlation(torch.tensor([float("nan"), 1.0]), torch.tensor([1.0, 2.0])) is None
