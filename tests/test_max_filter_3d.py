"""3D Max Filtering for DATE's o2o branch (docs/methods.md#date-head)."""
import pytest
import torch
import torch.nn.functional as F

from alignment_det.layers.max_filter_3d import MaxFiltering3D, max_filter_3d


def test_module_output_shapes_and_backward():
    torch.manual_seed(0)
    m = MaxFiltering3D(in_channels=32, num_levels=5, norm_groups=8)
    feats = [torch.randn(2, 32, s, s + 1, requires_grad=True) for s in (16, 8, 4, 2, 1)]
    logits = m(feats)
    assert [tuple(x.shape) for x in logits] == [(2, 1, s, s + 1) for s in (16, 8, 4, 2, 1)]
    filtered = m.filtered_features(feats)
    assert [x.shape for x in filtered] == [x.shape for x in feats]
    assert all((x >= 0).all() for x in filtered)  # ends with ReLU
    sum(x.sum() for x in logits).backward()
    assert m.conv.weight.grad.abs().sum() > 0 and m.filter.weight.grad.abs().sum() > 0
    assert feats[0].grad is not None


def test_constant_levels_take_max_over_neighbouring_levels_only():
    # constant maps stay constant under bilinear resizing, so level l's output is the max of the
    # constants of levels l-1..l+1: values [1, 2, 7, 3, 0] -> [max(1,2), max(1,2,7), max(2,7,3), max(7,3,0), max(3,0)]
    values = [1.0, 2.0, 7.0, 3.0, 0.0]
    feats = [torch.full((1, 2, s, s), v) for v, s in zip(values, (16, 8, 4, 2, 1))]
    out = max_filter_3d(feats)
    assert [x.unique().tolist() for x in out] == [[2.0], [7.0], [7.0], [7.0], [3.0]]
    assert [x.shape for x in out] == [x.shape for x in feats]


def test_impulse_spreads_3x3_in_space_and_one_level_in_depth():
    # four levels of equal size (no resizing): -1 everywhere, one 5 at level 1, position (2, 2)
    feats = [torch.full((1, 1, 6, 6), -1.0) for _ in range(4)]
    feats[1][0, 0, 2, 2] = 5.0
    out = max_filter_3d(feats)
    expected = torch.full((6, 6), -1.0)
    expected[1:4, 1:4] = 5.0  # 3x3 neighbourhood of (2, 2)
    for lvl in (0, 1, 2):  # levels within one step of level 1 see the 5
        assert torch.equal(out[lvl][0, 0], expected), lvl
    assert torch.equal(out[3][0, 0], torch.full((6, 6), -1.0))  # two levels away: untouched


def test_coarser_neighbour_is_bilinearly_resized():
    # level 1 (2x2) holds 8 in its top-left cell, level 0 (4x4) is zero. Bilinear 2 -> 4
    # (align_corners=False) samples source x = (i + .5)/2 - .5 = -.25 (clamped 0), .25, .75, 1.25, so the
    # weight of source cell 0 along each axis is [1, .75, .25, 0] and the upsampled map is
    # 8 * outer([1, .75, .25, 0]) = [[8, 6, 2, 0], [6, 4.5, 1.5, 0], [2, 1.5, .5, 0], [0, 0, 0, 0]].
    # The 3x3 max of that (zeros of level 0 never win) is:
    fine = torch.zeros(1, 1, 4, 4)
    coarse = torch.zeros(1, 1, 2, 2)
    coarse[0, 0, 0, 0] = 8.0
    out = max_filter_3d([fine, coarse])
    expected = torch.tensor([[8, 8, 6, 2], [8, 8, 6, 2], [6, 6, 4.5, 1.5], [2, 2, 1.5, 0.5]])
    assert torch.allclose(out[0][0, 0], expected)
    # and level 1 sees level 0 downsampled (all zeros) next to its own values: 3x3 max of [[8,0],[0,0]]
    assert torch.equal(out[1][0, 0], torch.full((2, 2), 8.0))


def test_pre_conv_feature_is_added_before_norm():
    # conv = 2 * identity (Dirac, bias 0): pre-norm sum = max3d(2x) + x, not max3d(2x) + 2x
    torch.manual_seed(1)
    C = 8
    m = MaxFiltering3D(in_channels=C, num_levels=3, norm_groups=4)
    with torch.no_grad():
        torch.nn.init.dirac_(m.conv.weight)
        m.conv.weight.mul_(2.0)
        m.conv.bias.zero_()
    feats = [torch.randn(1, C, s, s) for s in (8, 4, 2)]
    got = m.filtered_features(feats)
    pooled = max_filter_3d([2 * x for x in feats])
    for g, p, x in zip(got, pooled, feats):
        assert torch.allclose(g, F.relu(F.group_norm(p + x, 4)), atol=1e-5)
        assert not torch.allclose(g, F.relu(F.group_norm(p + 2 * x, 4)), atol=1e-3)


def test_bad_configuration_is_reported():
    with pytest.raises(ValueError, match="norm_groups"):
        MaxFiltering3D(in_channels=30, norm_groups=8)
    m = MaxFiltering3D(in_channels=8, num_levels=5, norm_groups=4)
    with pytest.raises(ValueError, match="5 levels"):
        m([torch.zeros(1, 8, 4, 4)] * 3)
