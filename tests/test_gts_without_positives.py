"""A ground-truth box that the assignment leaves without any positive (too small for the grid, or an
input shrunk too far: a 20 x 20 px image) is counted per step in ``assign/gts_without_positives``
and warned about once per run, with the box size and the smallest stride (ATSS, HCRAL-ATSS, DATE)."""
import logging

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from _cli import instant_config  # noqa: E402
from _inputs import gt_instances  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling import assignment  # noqa: E402

# 0.6 px, strictly between the grid points of every stride (as in test_one_class_and_empty.py).
TINY_BOX = [2.1, 2.1, 2.7, 2.7]
BIG_BOX = [10.0, 12.0, 70.0, 90.0]
CASES = [
    # (name, config, overrides, input (H, W), boxes of the first image, what the warning names)
    ("ATSS-tiny-box", "atss_instant_test.py", [], (128, 160), [BIG_BOX, TINY_BOX], "ATSS: a ground-truth box of 0.6 x 0.6 px"),
    ("ATSS-20px-image", "atss_instant_test.py", [], (20, 20), [[0.0, 0.0, 20.0, 20.0]],
     "ATSS: a ground-truth box of 20.0 x 20.0 px (w x h, in an input of 20 x 20 px)"),
    ("HCRAL-ATSS", "hcral_atss_instant_test.py", [], (128, 160), [BIG_BOX, TINY_BOX], "HCRALATSS: a ground-truth box of 0.6"),
    ("DATE-F", "date_instant_test.py", [], (128, 160), [BIG_BOX, TINY_BOX], "DATE (o2m): a ground-truth box of 0.6"),
]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("name,config,overrides,size,boxes,named", CASES, ids=[c[0] for c in CASES])
def test_ground_truth_without_positives_is_counted_and_warned_once(name, config, overrides, size, boxes, named, monkeypatch):
    monkeypatch.setattr(assignment, "_warned_gts_without_positives", False)  # a new run
    records = _Records()
    logging.getLogger(assignment.__name__).addHandler(records)
    cfg = load_config(instant_config(config), overrides)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    g = torch.Generator().manual_seed(0)
    # two images (BatchNorm trains on more than one value); the second has one ordinary box
    batch = [
        {"image": torch.rand(3, *size, generator=g) * 255, "instances": gt_instances(b, [0] * len(b), size=size)}
        for b in (boxes, [[2.0, 2.0, size[1] - 2.0, size[0] - 2.0]])
    ]
    try:
        with EventStorage(0) as storage:
            for it in range(2):
                storage.iter = it
                model(batch)
                assert storage.latest()[assignment.GTS_WITHOUT_POSITIVES_KEY][0] >= 1, name
    finally:
        logging.getLogger(assignment.__name__).removeHandler(records)
    warned = [m for m in records.messages if "got no positive prior" in m]
    assert len(warned) == 1, warned  # two steps, one warning
    assert named in warned[0] and "the smallest stride is 8 px" in warned[0]
