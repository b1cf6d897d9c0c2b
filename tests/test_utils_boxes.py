import math

import pytest

import torch

from alignment_det.utils.boxes import (
    aligned_diou_penalty,
    aligned_giou,
    aligned_iou,
    decode_boxes,
    encode_boxes,
    min_side,
    pairwise_giou,
    pairwise_iou,
)


def test_pairwise_iou_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    # overlap 5x5=25, union 100+100-25=175
    assert torch.allclose(pairwise_iou(a, b), torch.tensor([[25 / 175, 1.0, 0.0, 0.0]]))


def test_aligned_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[5.0, 5, 15, 15], [20, 0, 30, 10]])
    assert torch.allclose(aligned_iou(a, b), torch.tensor([25 / 175, 0.0]))
    # giou row 0: enclosing 15x15=225, union 175 -> 25/175 - 50/225
    # row 1: enclosing 30x10=300, union 200 -> 0 - 100/300
    assert torch.allclose(aligned_giou(a, b), torch.tensor([25 / 175 - 50 / 225, -1 / 3]), atol=1e-6)


def test_encode_decode_by_hand_and_roundtrip():
    anchors = torch.tensor([[0.0, 0, 10, 20]])
    target = torch.tensor([[5.0, 0, 25, 20]])  # centre moves +10 in x, width doubles
    d = encode_boxes(anchors, target, (10.0, 10.0, 5.0, 5.0))
    assert torch.allclose(d, torch.tensor([[10 * 10 / 10, 0.0, 5 * math.log(2), 0.0]]))
    assert torch.allclose(decode_boxes(d, anchors, (10.0, 10.0, 5.0, 5.0)), target, atol=1e-5)


def test_decode_clamps_huge_sizes():
    box = decode_boxes(torch.tensor([[0.0, 0, 100, 100]]), torch.tensor([[0.0, 0, 16, 16]]))
    assert torch.isfinite(box).all() and (box[0, 2] - box[0, 0]) <= 1000.0 + 1e-3


def test_min_side():
    assert min_side(torch.tensor([[0.0, 0, 0.5, 10]])).item() == 0.5


def test_box_xyxy_to_cxcywh_by_hand():
    from alignment_det.utils.boxes import box_xyxy_to_cxcywh

    # (2, 4, 10, 20): centre ((2+10)/2, (4+20)/2) = (6, 12), size 8 x 16
    out = box_xyxy_to_cxcywh(torch.tensor([[2.0, 4, 10, 20]]))
    assert torch.equal(out, torch.tensor([[6.0, 12, 8, 16]]))


def test_point_box_distances_by_hand():
    from alignment_det.utils.boxes import point_box_distances

    pts = torch.tensor([[4.0, 6.0], [12.0, 6.0]])
    boxes = torch.tensor([[0.0, 0, 10, 20]])
    d = point_box_distances(pts, boxes)
    assert d.shape == (2, 1, 4)
    # (4, 6) in (0,0,10,20): l=4, t=6, r=10-4=6, b=20-6=14; (12, 6): l=12, r=-2 (outside)
    assert torch.equal(d[0, 0], torch.tensor([4.0, 6, 6, 14]))
    assert torch.equal(d[1, 0], torch.tensor([12.0, 6, -2, 14]))
    assert (d.min(-1).values > 0).tolist() == [[True], [False]]


def test_pairwise_giou_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10], [3, 3, 3, 3]])
    b = torch.tensor([[5.0, 5, 15, 15], [20, 0, 30, 10], [0, 0, 10, 10], [3, 3, 3, 3]])
    got = pairwise_giou(a, b)
    # row 0: overlap 25, union 175, enclosing 15x15=225 -> 25/175 - 50/225;
    #        disjoint 10x10 boxes in a 30x10 enclosure -> 0 - 100/300; identical -> 1.
    #        vs the point (3,3): IoU 0, enclosing 100, union 100 -> 0.
    assert torch.allclose(got[0], torch.tensor([25 / 175 - 50 / 225, -1 / 3, 1.0, 0.0]), atol=1e-6)
    # a point against itself: empty enclosing box -> 0, not NaN.
    assert got[1, 3].item() == 0.0 and torch.isfinite(got).all()
    # the pairwise and aligned forms agree on the diagonal
    assert torch.allclose(pairwise_giou(a[:1], b[:1])[0], aligned_giou(a[:1], b[:1]), atol=1e-6)


def test_pairwise_giou_matches_torchvision_when_available():
    try:
        from torchvision.ops import generalized_box_iou
    except Exception as e:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError
        pytest.skip(f"torchvision not importable ({type(e).__name__}); the by-hand test covers the formula")
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(30, 2, generator=g) * 50 + 1], dim=1)
    assert torch.allclose(pairwise_giou(boxes[:12], boxes[12:]), generalized_box_iou(boxes[:12], boxes[12:]), atol=1e-6)


def test_diou_penalty_by_hand():
    # centres (5, 5) and (5, 10): ρ² = 25; enclosing box [0, 0, 10, 20]: c² = 10² + 20² = 500
    a, b = torch.tensor([[0.0, 0, 10, 10], [0, 0, 4, 4]]), torch.tensor([[0.0, 0, 10, 20], [1, 1, 3, 3]])
    torch.testing.assert_close(aligned_diou_penalty(a, b), torch.tensor([25 / 500, 0.0]))
