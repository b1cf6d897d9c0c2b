"""Every method with ``num_classes=1`` trains a step on a batch where one image has no positive.

Users hit both: a single-class dataset (pedestrians, CrowdHuman) and images without any object, or
whose only object is too small for any anchor / location to become positive. For each method the
instant-test model is built with one class, and one step (forward, backward, the config's optimizer
with its gradient clipping) runs on two images: the first with three ground truths, the second either
with none or with a single 0.6 px box that lies between the locations of every FCOS-style grid and is
below MAL's 1-px bag size (so it gets no positive there; anchor matchers with low-quality matches
still give it one); and a batch where neither image has a positive. Losses and gradients must be
finite, and the losses of a second forward after the step too; inference then predicts class 0 only.

To cover a new method, add its instant-test config (and overrides, if it is a variant) to METHODS.
"""
import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from _cli import instant_config  # noqa: E402
from alignment_det.engine import Trainer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402

# (name, instant-test config in configs/quick_schedules/, overrides)
METHODS = [
    ("RetinaNet", "retinanet_instant_test.py", []),
    ("FCOS", "fcos_instant_test.py", []),
    ("MAL", "mal_instant_test.py", []),
    ("DATE-F", "date_instant_test.py", []),
    ("DATE-R", "date_instant_test.py", ["model.o2m=retinanet"]),
    ("DATE-F-3DMF", "date_instant_test.py", ["model.head.use_3dmf=True"]),
    ("DATE-F-OneNetCost", "date_instant_test.py", ["model.o2o_matcher=onenet_cost"]),
    ("RetinaNetConf", "retinanet_conf_instant_test.py", []),
    ("RetinaNetConf-CELoss_w", "retinanet_conf_instant_test.py", ["model.neg_weight=1e-4"]),
    ("RetinaNet+ALWA", "retinanet_alwa_instant_test.py", []),
    ("FasterRCNN+ALWA", "faster_rcnn_alwa_instant_test.py", []),
    ("ATSS", "atss_instant_test.py", []),
    ("HCRAL-ATSS", "hcral_atss_instant_test.py", []),
    ("HCRAL-RetinaNet", "hcral_retinanet_instant_test.py", []),
]
H, W = 128, 160
GT_BOXES = [[10.0, 12.0, 70.0, 90.0], [60.0, 30.0, 150.0, 120.0], [5.0, 80.0, 40.0, 126.0]]
# 0.6 px wide, strictly between the grid points of every stride (Detectron2 FCOS: j·s; DATE: (j+0.5)·s).
TINY_BOX = [[2.1, 2.1, 2.7, 2.7]]
# Ground truth of the two images: the second has no positive; in the last case neither has.
BATCHES = {
    "second_no_boxes": (GT_BOXES, []),
    "second_tiny_box_only": (GT_BOXES, TINY_BOX),
    "no_positive_in_batch": (TINY_BOX, []),
}


def _instances(boxes):
    inst = Instances((H, W))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.zeros(len(boxes), dtype=torch.long)
    return inst


def _batch(case):
    g = torch.Generator().manual_seed(0)
    return [
        {"image": torch.randint(0, 256, (3, H, W), generator=g).float(), "instances": _instances(boxes), "height": H, "width": W}
        for boxes in BATCHES[case]
    ]


def _assert_finite(losses, what):
    assert losses, f"{what}: no losses"
    for k, v in losses.items():
        assert torch.isfinite(v).all(), f"{what}: {k} = {v}"


@pytest.mark.parametrize("case", list(BATCHES))
@pytest.mark.parametrize("name,config,overrides", METHODS, ids=[m[0] for m in METHODS])
def test_one_class_step_with_an_image_without_positives(name, config, overrides, case):
    # README's recipe: model.num_classes=K works on every config (ALWA-wrapped and Faster R-CNN too).
    cfg = load_config(instant_config(config), ["model.num_classes=1", *overrides])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert all(m.num_classes == 1 for m in model.modules() if isinstance(getattr(m, "num_classes", None), int))
    model.train()
    optimizer = Trainer.build_optimizer(cfg, model)
    batch = _batch(case)
    with EventStorage(0) as storage:
        losses = model(batch)
        _assert_finite(losses, f"{name}, first step")
        optimizer.zero_grad()
        sum(losses.values()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads, f"{name}: no parameter received a gradient"
        bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
        assert not bad, f"{name}: non-finite gradients in {bad[:5]}"
        optimizer.step()
        assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: non-finite weights after the step"
        storage.iter = 1
        _assert_finite(model(batch), f"{name}, after the step")
    # and inference with one class; every score passes, so there are detections to look at
    model.eval()
    for m in model.modules():
        if hasattr(m, "test_score_thresh"):
            m.test_score_thresh = 0.0
    with torch.no_grad():
        outputs = model([{k: v for k, v in d.items() if k != "instances"} for d in batch])
    for out in outputs:
        inst = out["instances"]
        assert len(inst) > 0 and torch.isfinite(inst.scores).all() and torch.all(inst.pred_classes == 0), name
