"""End-to-end tests of MALRetinaNet (Detectron2 layer), on the tiny instant-test model (CPU, ~128 px).

MAL under ``--num-gpus 2`` (two CPU processes) is checked by the ``--register`` run of
``test_accuracy_benchmark.py``, which trains MAL: one two-process training serves both checks."""
from _requires import detectron2_or_skip

detectron2_or_skip()

import copy  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyCall as L  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from detectron2.modeling.matcher import Matcher  # noqa: E402
from detectron2.modeling.meta_arch import RetinaNet  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from _inputs import model_of, tiny_config  # noqa: E402

import alignment_det.modeling.meta_arch.mal as mal_module  # noqa: E402
from alignment_det.assigners.mal_bags import selection_count  # noqa: E402
from alignment_det.checkpoint import CheckedCheckpointer  # noqa: E402
from alignment_det.config import load_config  # noqa: E402
from alignment_det.layers.anchor_depression import depression_ratio  # noqa: E402
from alignment_det.modeling.meta_arch.mal import MAL_BOX_CODER_WEIGHTS, MALRetinaNet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INSTANT = str(REPO / "configs" / "quick_schedules" / "mal_instant_test.py")
H, W = 128, 160
# Keys MALRetinaNet adds to RetinaNet's constructor (removed to build the plain RetinaNet twin).
MAL_KEYS = (
    "max_iter", "anchor_bag_size", "bbox_reg_weight", "bag_smooth_l1_beta", "saturation_thresh",
    "pos_neg_alpha", "neg_gamma", "selection", "depression_schedule", "depression_max_ratio",
    "depression_scale",
)


def _model_cfg(*overrides):
    return tiny_config(INSTANT, *overrides)


def _build(*overrides, seed=0):
    cfg = _model_cfg(*overrides)
    model = model_of(cfg, seed)
    assert isinstance(model, MALRetinaNet)
    return model, cfg


def _random_boxes(n, g, h=H, w=W):
    wh = torch.rand(n, 2, generator=g) * 60 + 4
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


def _batch(num_boxes, seed=0, num_classes=3):
    """Random images; ``num_boxes`` per image, 0 allowed; the int -1 means the 300-box crowd with a 0.5-px box."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for n in num_boxes:
        inst = Instances((H, W))
        if n == -1:
            boxes = _random_boxes(299, g)
            sub_pixel = torch.tensor([[40.0, 40.0, 40.5, 40.5]])  # survives filter_empty_instances (> 1e-5)
            boxes = torch.cat([boxes, sub_pixel])
        else:
            boxes = _random_boxes(n, g)
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (boxes.shape[0],), generator=g)
        image = torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8).float()
        batch.append({"image": image, "instances": inst, "height": H, "width": W})
    return batch


@pytest.fixture(scope="module")
def depressing_model():
    # Constant depression so the depression path runs at t = 0 (symmetric-step starts at rho = 0).
    model, _ = _build("model.depression_schedule=constant")
    return model


@pytest.mark.parametrize(
    "num_boxes", [(0, 0), (0, 3), (-1, 5)], ids=["empty", "half_empty", "crowded_300_with_subpixel"]
)
def test_train_forward_backward_finite(depressing_model, num_boxes):
    model = depressing_model
    model.train()
    model.zero_grad(set_to_none=True)
    with EventStorage(0):
        losses = model(_batch(num_boxes))
    assert set(losses) == {"loss_mal_pos", "loss_mal_neg"}  # num_selected popped: it is not a loss
    for name, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), (name, v)
    if all(n == 0 for n in num_boxes):
        assert losses["loss_mal_pos"].item() == 0.0  # no bags at all
    else:
        assert losses["loss_mal_pos"].item() > 0.0
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["head.cls_score.weight"].abs().sum() > 0
    if not all(n == 0 for n in num_boxes):
        assert grads["head.bbox_pred.weight"].abs().sum() > 0


def test_selection_and_depression_follow_storage_iter():
    model, cfg = _build("model.depression_schedule=symmetric_step")
    model.train()
    k_bag = cfg.model.anchor_bag_size
    T = cfg.train.max_iter
    assert model.max_iter == T  # "${..train.max_iter}" resolved
    for t in (0, T // 2, T - 1):
        with EventStorage(t) as storage:
            model(_batch((2, 1)))
            latest = storage.latest()
        assert latest["mal/num_selected_per_bag"][0] == selection_count(k_bag, t / T)
        assert latest["mal/depression_ratio"][0] == pytest.approx(depression_ratio("symmetric_step", iteration=t, max_iter=T))
    # The schedule really runs from the whole bag to top-1 over the instant-test horizon.
    assert selection_count(k_bag, 0.0) == k_bag and selection_count(k_bag, (T - 1) / T) == 1

    model_all, _ = _build("model.selection=all")
    model_all.train()
    with EventStorage(T - 1) as storage:
        model_all(_batch((2, 1)))
        assert storage.latest()["mal/num_selected_per_bag"][0] == k_bag


def test_set_iter_fallback_outside_event_storage(monkeypatch):
    model, cfg = _build()
    model.train()
    seen = []
    real = mal_module.mal_losses

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(mal_module, "mal_losses", spy)
    T = cfg.train.max_iter
    model.set_iter(T // 4)
    losses = model(_batch((2, 2)))  # no EventStorage: must not raise, logging is skipped
    assert torch.isfinite(sum(losses.values()))
    assert seen[-1]["progress"] == pytest.approx((T // 4) / T)
    # The trainer's storage wins over the fallback.
    with EventStorage(T - 1):
        model(_batch((2, 2)))
    assert seen[-1]["progress"] == pytest.approx((T - 1) / T)
    # Training loss and inference decode with the same (10, 10, 5, 5) box coder.
    assert tuple(seen[-1]["box_coder_weights"]) == MAL_BOX_CODER_WEIGHTS
    assert tuple(model.box2box_transform.weights) == MAL_BOX_CODER_WEIGHTS


def test_eval_forward_returns_instances(depressing_model):
    model = depressing_model
    model.eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _batch((1, 1))]
    with torch.no_grad():
        out = model(inputs)
    assert len(out) == 2
    for r in out:
        inst = r["instances"]
        assert isinstance(inst, Instances)
        assert inst.image_size == (H, W)
        assert {"pred_boxes", "scores", "pred_classes"} <= set(inst.get_fields())
        assert len(inst) <= model.max_detections_per_image


def _head_input_vs_backbone_output(model, batch):
    captured = {}
    h1 = model.backbone.register_forward_hook(lambda m, i, o: captured.__setitem__("backbone", o))
    h2 = model.head.register_forward_pre_hook(lambda m, i: captured.__setitem__("head", i[0]))
    try:
        with EventStorage(0), torch.no_grad():
            model(batch)
    finally:
        h1.remove()
        h2.remove()
    return [captured["backbone"][f] for f in model.head_in_features], captured["head"]


def test_depression_applied_in_training_only(depressing_model):
    model = depressing_model
    batch = _batch((2, 2))
    model.train()
    feats, head_in = _head_input_vs_backbone_output(model, batch)
    # Constant rho = 0.5: every level has some positions scaled by 0.25, none by anything else.
    for f, v in zip(feats, head_in):
        scaled = ~torch.isclose(v, f)
        assert scaled.any()
        assert torch.allclose(v[scaled], 0.25 * f[scaled])
    model.eval()
    feats, head_in = _head_input_vs_backbone_output(model, [{k: x for k, x in d.items() if k != "instances"} for d in batch])
    for f, v in zip(feats, head_in):
        assert torch.equal(f, v)


def _retinanet_twin_cfg(mal_model_cfg):
    """The same model config with Detectron2's RetinaNet as target (the baseline MAL starts from)."""
    cfg = copy.deepcopy(mal_model_cfg)
    cfg._target_ = RetinaNet
    for k in MAL_KEYS:
        del cfg[k]
    cfg.anchor_matcher = L(Matcher)(thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True)
    return cfg


def test_retinanet_checkpoint_loads_and_mal_adds_no_parameters(tmp_path):
    mal, cfg = _build(seed=1)
    torch.manual_seed(2)
    retina = instantiate(_retinanet_twin_cfg(cfg.model))
    assert type(retina) is RetinaNet
    # MAL adds no parameters and no buffers: identical state_dict keys and shapes.
    mal_sd, ret_sd = mal.state_dict(), retina.state_dict()
    assert set(mal_sd) == set(ret_sd)
    assert all(mal_sd[k].shape == ret_sd[k].shape for k in ret_sd)
    assert sum(p.numel() for p in mal.parameters()) == sum(p.numel() for p in retina.parameters())

    DetectionCheckpointer(retina, str(tmp_path)).save("retinanet")
    # strict=True fails on any model parameter left uninitialised: nothing is missing.
    incompatible = CheckedCheckpointer(mal, str(tmp_path), strict=True).load(str(tmp_path / "retinanet.pth"))
    assert incompatible is not None
    for k, v in retina.state_dict().items():
        assert torch.equal(mal.state_dict()[k], v), k

    # A Detectron2 RetinaNet baseline config (retinanet_instant_test) has the very same keys.
    base_cfg = load_config(str(REPO / "configs" / "quick_schedules" / "retinanet_instant_test.py"))
    base = instantiate(base_cfg.model)
    assert set(base.state_dict()) == set(mal_sd)

    # Inference is RetinaNet's: with the same weights and box coder the detections are identical.
    mal.eval()
    retina.eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _batch((1,), seed=3)]
    mal.test_score_thresh = retina.test_score_thresh = 0.0  # an untrained model scores ~prior
    with torch.no_grad():
        a, b = mal(inputs)[0]["instances"], retina(inputs)[0]["instances"]
    assert len(a) > 0
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor) and torch.equal(a.scores, b.scores)


def test_instant_test_train_then_eval_only(instant_run):
    run = instant_run("mal_instant_test.py")
    assert "loss_mal_pos" in run.log and "loss_mal_neg" in run.log
    assert run.final.is_file()
    log = run.eval_only()
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    row = re.search(r"copypaste: (\S+),(\S+),(\S+),(\S+),(\S+),(\S+)\n", log.split("copypaste: AP,AP50,AP75,APs,APm,APl", 1)[1])
    assert row is not None
    float(row.group(1))  # a number (possibly nan for an untrained model), not garbage
