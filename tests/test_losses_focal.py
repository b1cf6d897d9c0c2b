import math

import pytest
import torch

from alignment_det.losses.focal import sigmoid_focal_loss


def test_focal_by_hand():
    # logit 0 -> p = 0.5. Positive: 0.25 * 0.5^2 * ln 2; negative: 0.75 * 0.5^2 * ln 2.
    x = torch.zeros(2)
    y = torch.tensor([1.0, 0.0])
    expected = torch.tensor([0.25, 0.75]) * 0.25 * math.log(2)
    assert torch.allclose(sigmoid_focal_loss(x, y), expected)
    assert torch.allclose(sigmoid_focal_loss(x, y, reduction="sum"), expected.sum())


def test_focal_matches_fvcore_when_available():
    fvcore_nn = pytest.importorskip("fvcore.nn", reason="fvcore not installed; the by-hand test covers the formula")
    torch.manual_seed(0)
    x, y = torch.randn(50, 7), (torch.rand(50, 7) > 0.8).float()
    for alpha, gamma in ((0.25, 2.0), (-1.0, 1.5)):
        ours = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
        assert torch.allclose(ours, fvcore_nn.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma))


def test_focal_rejects_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(1), torch.zeros(1), reduction="avg")
