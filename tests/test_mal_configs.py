"""Every MAL config loads, resolves ``model.max_iter`` from ``train.max_iter`` and instantiates
(the save / load round trip of every config is tests/test_configs.py's)."""
from _requires import detectron2_or_skip

detectron2_or_skip()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.modeling.backbone.resnet import BottleneckBlock  # noqa: E402

from alignment_det.config import load_config  # noqa: E402
from alignment_det.modeling.meta_arch.mal import MAL_BOX_CODER_WEIGHTS, MALRetinaNet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ZOO = ["configs/mal_R50.py", "configs/mal_R101.py", "configs/mal_X101.py"]
INSTANT = "configs/quick_schedules/mal_instant_test.py"
ABLATIONS = sorted(str(p.relative_to(REPO)) for p in (REPO / "projects" / "MAL" / "configs").glob("*.py"))
ALL = ZOO + [INSTANT] + ABLATIONS

# docs/methods.md#mal-defaults (code values): bag size, iterations, LR decay steps.
EXPECTED = {
    "configs/mal_R50.py": (40, 135000, [90000, 120000]),
    "configs/mal_R101.py": (40, 180000, [120000, 160000]),
    "configs/mal_X101.py": (50, 180000, [120000, 160000]),
}
ABLATION_SETTINGS = {
    "mal_R50_selection_only.py": ("schedule", "off"),
    "mal_R50_depression_only.py": ("all", "symmetric_step"),
    "mal_R50_selection_all.py": ("all", "off"),
    "mal_R50_depression_constant.py": ("schedule", "constant"),
    "mal_R50_depression_step.py": ("schedule", "step"),
    "mal_R50_depression_symmetric_step.py": ("schedule", "symmetric_step"),
}


def _load(rel):
    return load_config(str(REPO / rel))


def test_ablation_set_is_complete():
    assert {Path(a).name for a in ABLATIONS} == set(ABLATION_SETTINGS)


@pytest.mark.parametrize("rel", ALL)
def test_loads_and_resolves_horizon(rel):
    cfg = _load(rel)
    assert cfg.model._target_ is MALRetinaNet
    assert cfg.model.max_iter == cfg.train.max_iter  # "${..train.max_iter}" resolves
    assert list(cfg.model.box2box_transform.weights) == list(MAL_BOX_CODER_WEIGHTS)
    assert cfg.model.head.prior_prob == 0.02
    if rel in EXPECTED:
        bag, iters, steps = EXPECTED[rel]
        assert cfg.model.anchor_bag_size == bag
        assert cfg.train.max_iter == iters
        assert list(cfg.lr_multiplier.scheduler.milestones) == steps
        assert cfg.lr_multiplier.scheduler.num_updates == iters
        assert cfg.lr_multiplier.warmup_length * iters == pytest.approx(500)
        assert cfg.dataloader.train.total_batch_size == 16
        assert cfg.optimizer.lr == 0.01
        assert cfg.model.backbone.bottom_up.stem.norm == "FrozenBN"
        assert (cfg.model.selection, cfg.model.depression_schedule) == ("schedule", "symmetric_step")
    name = Path(rel).name
    if name in ABLATION_SETTINGS:
        assert (cfg.model.selection, cfg.model.depression_schedule) == ABLATION_SETTINGS[name]


@pytest.mark.parametrize("rel", ALL)
def test_instantiates(rel):
    cfg = _load(rel)
    # The detector on the meta device (every constructor runs, no weight is allocated: 5-7x faster
    # for the full-size models); the head's initial bias, a value, from a real copy of the head.
    with torch.device("meta"):
        model = instantiate(cfg.model)
    assert isinstance(model, MALRetinaNet)
    assert model.max_iter == cfg.train.max_iter
    assert model.anchor_bag_size == cfg.model.anchor_bag_size
    assert tuple(model.box2box_transform.weights) == MAL_BOX_CODER_WEIGHTS
    prior = torch.sigmoid(instantiate(cfg.model.head).cls_score.bias).mean().item()
    assert prior == pytest.approx(0.02, rel=1e-4)
    if rel == "configs/mal_X101.py":
        # ResNeXt-101 32x8d as Detectron2's build_resnet_backbone: 3-4-23-3 bottleneck blocks, grouped
        # 3x3 conv of width 256 in res2, stride in the 3x3 conv.
        stages = [getattr(model.backbone.bottom_up, f"res{i}") for i in range(2, 6)]
        assert [len(s) for s in stages] == [3, 4, 23, 3]
        block = stages[0][0]
        assert isinstance(block, BottleneckBlock)
        assert block.conv2.groups == 32 and block.conv2.out_channels == 256
        assert stages[1][0].conv2.stride == (2, 2) and stages[1][0].conv1.stride == (1, 1)
    if rel == "configs/mal_R101.py":
        assert len(model.backbone.bottom_up.res4) == 23
