"""MAL anchor depression (docs/methods.md#mal-anchor-depression)."""
import math

import pytest
import torch

from alignment_det.layers.anchor_depression import (
    AnchorDepression,
    class_agnostic_cam,
    depress_features,
    depression_mask,
    depression_ratio,
)


def test_cam_by_hand():
    # channel 0 = [1, 3], channel 1 = [2, 0] -> g = [2, 1] -> M = [2*1 + 1*2, 2*3 + 1*0] = [4, 6]
    u = torch.tensor([[[[1.0, 3.0]], [[2.0, 0.0]]]])
    assert class_agnostic_cam(u).tolist() == [[[4.0, 6.0]]]


def test_depression_by_hand():
    u = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # g = 2.5 -> M = 2.5 * U = [2.5, 5, 7.5, 10]; sorted desc [10, 7.5, 5, 2.5]
    # rho = .5: tau = sorted[floor(4 * .5) = 2] = 5 -> P = {7.5, 10} -> those two x .25
    assert depress_features(u, ratio=0.5).tolist() == [[[[1.0, 2.0], [0.75, 1.0]]]]
    # rho = .25: tau = sorted[1] = 7.5 -> P = {10}
    assert depress_features(u, ratio=0.25).tolist() == [[[[1.0, 2.0], [3.0, 1.0]]]]
    # rho = .3: floor(1.2) = 1 -> same as .25
    assert depress_features(u, ratio=0.3).tolist() == [[[[1.0, 2.0], [3.0, 1.0]]]]
    # a different scale
    assert depress_features(u, ratio=0.25, scale=0.5).tolist() == [[[[1.0, 2.0], [3.0, 2.0]]]]
    # the CAM is g * U: for an all-negative map the most negative position has the largest CAM
    # (g = -2.5 -> M = [2.5, 5, 7.5, 10] again)
    assert depress_features(-u, ratio=0.25).tolist() == [[[[-1.0, -2.0], [-3.0, -1.0]]]]


def test_ratio_zero_is_identity_and_half_depresses_exactly_half():
    torch.manual_seed(0)
    u = torch.randn(2, 8, 7, 9)
    # rho = 0 -> mask empty, multiplier all ones
    assert not depression_mask(u, ratio=0.0).any()
    assert torch.equal(depress_features(u, ratio=0.0), u)
    # rho = .5 -> exactly floor(63 / 2) = 31 positions per image scaled by .25 (random input: no ties)
    mask = depression_mask(u, ratio=0.5)
    assert mask.sum(dim=(1, 2)).tolist() == [31, 31]
    v = depress_features(u, ratio=0.5)
    expected = u * torch.where(mask, 0.25, 1.0)[:, None]
    assert torch.allclose(v, expected)
    # depressed positions are the top-CAM ones: every depressed CAM value beats every kept one
    cam = class_agnostic_cam(u)
    for i in range(2):
        assert cam[i][mask[i]].min() > cam[i][~mask[i]].max()


def test_threshold_is_strict():
    # constant map: every CAM value equals tau -> nothing is strictly above it
    u = torch.ones(1, 3, 4, 4)
    assert not depression_mask(u, ratio=0.5).any()
    # ratio 1: floor(H W) = H W -> every position
    assert depression_mask(torch.randn(1, 2, 3, 3), ratio=1.0).all()
    with pytest.raises(ValueError, match="ratio"):
        depression_mask(u, ratio=1.5)


def test_mask_carries_no_gradient():
    torch.manual_seed(1)
    u = torch.randn(1, 4, 5, 5, requires_grad=True)
    v = depress_features(u, ratio=0.5)
    v.sum().backward()
    mask = depression_mask(u, ratio=0.5)
    # dV/dU is the multiplier itself: no term through the CAM / threshold
    assert torch.equal(u.grad, torch.where(mask, 0.25, 1.0)[:, None].expand_as(u))


def _code_ratio(ia_type, max_iteration, iteration):
    """Transcription of DeLightCMU/MAL ``RetinaNet.ratio_function`` for IA_TYPE 0, 1, 5 (``iteration`` 1-based)."""
    if ia_type == 0:
        return 0.5
    segments = 6 if ia_type == 1 else 12
    table = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) if ia_type == 1 else (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1)
    for s, value in enumerate(table, start=1):
        if iteration < max_iteration / segments * s:
            return value
    return 0.5 if ia_type == 1 else 0.0


def test_schedules_by_hand():
    # symmetric_step, T = 120: u = (t + 1) / 120, segment = min(11, floor(12 u)) = min(11, floor((t + 1) / 10))
    sym = lambda t: depression_ratio("symmetric_step", iteration=t, max_iter=120)  # noqa: E731
    assert sym(0) == 0.0  # (0+1)/10 -> segment 0
    assert sym(8) == 0.0  # 9/10 -> 0
    assert sym(9) == 0.1  # 10/10 -> 1
    assert sym(29) == 0.3  # 30/10 -> 3
    assert sym(48) == 0.4  # 49/10 -> 4
    assert sym(49) == 0.5 and sym(68) == 0.5  # 50/10 -> 5, 69/10 -> 6: both segments are the 0.5 peak
    assert sym(69) == 0.4  # 70/10 -> 7
    assert sym(70) == 0.4  # 71/10 -> 7
    assert sym(99) == 0.1  # 100/10 -> 10
    assert sym(109) == 0.0 and sym(119) == 0.0  # segment 11 and beyond (clamped)
    assert sym(10_000) == 0.0
    # step, T = 60: segment = min(5, floor(6 (t + 1) / 60)) = min(5, floor((t + 1) / 10))
    step = lambda t: depression_ratio("step", iteration=t, max_iter=60)  # noqa: E731
    assert [step(t) for t in (0, 9, 19, 39, 49, 59)] == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert depression_ratio("constant", iteration=3, max_iter=60) == 0.5
    assert depression_ratio("off", iteration=3, max_iter=60) == 0.0
    # max_ratio rescales the table
    assert depression_ratio("symmetric_step", iteration=49, max_iter=120, max_ratio=0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="schedule"):
        depression_ratio("linear", iteration=0, max_iter=10)
    with pytest.raises(ValueError, match="max_iter"):
        depression_ratio("step", iteration=0, max_iter=0)


@pytest.mark.parametrize("max_iter", [7, 100, 135, 1000])
def test_schedules_match_released_code(max_iter):
    for t in range(max_iter + 2):
        assert depression_ratio("symmetric_step", iteration=t, max_iter=max_iter) == _code_ratio(5, max_iter, t + 1)
        assert depression_ratio("step", iteration=t, max_iter=max_iter) == _code_ratio(1, max_iter, t + 1)
        assert depression_ratio("constant", iteration=t, max_iter=max_iter) == _code_ratio(0, max_iter, t + 1)


def test_module_over_levels_and_modes():
    torch.manual_seed(2)
    feats = [torch.randn(2, 6, 8, 10), torch.randn(2, 6, 4, 5), torch.randn(2, 6, 1, 1)]
    module = AnchorDepression(schedule="symmetric_step")
    out, ratio = module(feats, iteration=59, max_iter=120)  # peak
    assert ratio == 0.5
    for f, v in zip(feats, out):
        assert v.shape == f.shape
        scaled = ~torch.isclose(v, f)
        h, w = f.shape[-2:]
        # each scaled position is scaled in every channel, and floor(H W / 2) positions per image are
        assert torch.equal(scaled.all(dim=1), scaled.any(dim=1))
        assert scaled.all(dim=1).sum(dim=(1, 2)).tolist() == [math.floor(h * w / 2)] * 2
        assert torch.allclose(v[scaled], 0.25 * f[scaled])
    # start of training: ratio 0, features returned untouched
    out, ratio = module(feats, iteration=0, max_iter=120)
    assert ratio == 0.0 and all(a is b for a, b in zip(out, feats))
    # "off" and eval() never depress
    off_out, off_ratio = AnchorDepression(schedule="off")(feats, iteration=59, max_iter=120)
    assert off_ratio == 0.0 and all(a is b for a, b in zip(off_out, feats))
    module.eval()
    eval_out, eval_ratio = module(feats, iteration=59, max_iter=120)
    assert eval_ratio == 0.0 and all(a is b for a, b in zip(eval_out, feats))


def test_module_rejects_bad_configuration():
    with pytest.raises(ValueError, match="schedule"):
        AnchorDepression(schedule="sigmoid")
    with pytest.raises(ValueError, match="max_ratio"):
        AnchorDepression(max_ratio=1.5)
