"""RetinaNet-Conf score fusion s = cls^(1-a) * obj^a (docs/methods.md#retinanet-conf-score-fusion), by hand."""
import math

import pytest
import torch

from alignment_det.layers.score_fusion import DEFAULT_FUSION_ALPHA, fuse_logits, fuse_scores


def test_default_alpha_is_spec_value():
    assert DEFAULT_FUSION_ALPHA == 0.4


def test_fusion_by_hand():
    # a = 0.5: sqrt(0.25) * 1 = 0.5 ; sqrt(0.25) * sqrt(0.04) = 0.5 * 0.2 = 0.1
    cls = torch.tensor([[0.25], [0.25]])
    obj = torch.tensor([[1.0], [0.04]])
    assert torch.allclose(fuse_scores(cls, obj, alpha=0.5), torch.tensor([[0.5], [0.1]]))


def test_fusion_default_alpha_by_hand():
    # a = 0.4 with powers of two: (2^-5)^0.6 = 2^-3, (2^-5)^0.4 = 2^-2
    cls = torch.tensor([[1.0], [2.0**-5], [2.0**-5]])
    obj = torch.tensor([[2.0**-5], [1.0], [2.0**-5]])
    assert torch.allclose(fuse_scores(cls, obj), torch.tensor([[2.0**-2], [2.0**-3], [2.0**-5]]))


def test_obj_broadcasts_over_classes():
    # (R=2, K=2) with (R, 1): row 0 obj 1 -> sqrt(cls); row 1 obj 0.25 -> sqrt(cls) * 0.5
    cls = torch.tensor([[0.25, 1.0], [1.0, 0.0625]])
    obj = torch.tensor([[1.0], [0.25]])
    expected = torch.tensor([[0.5, 1.0], [0.5, 0.125]])
    assert torch.allclose(fuse_scores(cls, obj, 0.5), expected)
    # obj given as (R,) is the same thing
    assert torch.allclose(fuse_scores(cls, obj.squeeze(-1), 0.5), expected)
    # batched (N, R, K) with (N, R, 1)
    out = fuse_scores(cls.expand(3, 2, 2), obj.expand(3, 2, 1), 0.5)
    assert out.shape == (3, 2, 2) and torch.allclose(out, expected.expand(3, 2, 2))


def test_alpha_zero_is_bitwise_identity():
    torch.manual_seed(0)
    cls = torch.rand(7, 5)
    obj = torch.rand(7, 1)
    out = fuse_scores(cls, obj, alpha=0.0)
    assert out is cls
    # a half-precision cls with a float32 obj keeps its dtype (no promotion)
    cls16 = cls.half()
    assert fuse_scores(cls16, obj, 0).dtype == torch.float16
    # logits helper: exactly RetinaNet's sigmoid scores
    cl, ol = torch.randn(7, 5), torch.randn(7, 1)
    assert torch.equal(fuse_logits(cl, ol, alpha=0.0), torch.sigmoid(cl))


def test_alpha_one_ranks_by_confidence_only():
    cls = torch.tensor([[0.0, 0.3], [0.9, 0.1]])
    obj = torch.tensor([[0.7], [0.2]])
    # cls^0 = 1 (also for cls = 0): every class of an anchor gets its obj score
    assert torch.allclose(fuse_scores(cls, obj, 1.0), torch.tensor([[0.7, 0.7], [0.2, 0.2]]))


def test_fusion_reorders_candidates():
    # A: cls 0.5, obj 0.01 -> 0.5^0.6 * 0.01^0.4 ~ 0.105 ; B: cls 0.4, obj 0.9 -> 0.4^0.6 * 0.9^0.4 ~ 0.553
    cls = torch.tensor([[0.5], [0.4]])
    obj = torch.tensor([[0.01], [0.9]])
    fused = fuse_scores(cls, obj)
    assert cls.argmax().item() == 0 and fused.argmax().item() == 1
    assert fused[0, 0].item() == pytest.approx(0.5**0.6 * 0.01**0.4)


def test_fuse_logits_by_hand():
    # sigmoid(0) = 0.5 ; sigmoid(ln 3) = 0.75 ; a = 0.5 -> sqrt(0.5 * 0.75)
    out = fuse_logits(torch.zeros(1, 1), torch.full((1, 1), math.log(3.0)), alpha=0.5)
    assert out.item() == pytest.approx(math.sqrt(0.375))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.4x", True, None])
def test_alpha_out_of_range_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        fuse_scores(torch.rand(3, 2), torch.rand(3, 1), alpha)


@pytest.mark.parametrize("obj_shape", [(3, 2), (4, 1), (2, 3, 1)])
def test_obj_shape_mismatch_rejected(obj_shape):
    # per-class obj, wrong anchor count, extra leading dim: all refused instead of silently broadcast
    with pytest.raises(ValueError, match="obj_scores"):
        fuse_scores(torch.rand(3, 2), torch.rand(*obj_shape), 0.4)
