"""Every zoo config loads, instantiates its model and survives LazyConfig.save/load."""
import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import os  # noqa: E402
import torch  # noqa: E402

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.utils.registry import locate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from alignment_det.config import check_override_keys, load_config  # noqa: E402
from alignment_det.model_zoo import get_config_file, list_configs  # noqa: E402

CONFIGS = list_configs()
PROJECT_CONFIGS = sorted(
    os.path.join(root, f)
    for root, _, files in os.walk(os.path.join(os.path.dirname(__file__), "..", "projects"))
    for f in files
    if f.endswith(".py") and os.path.basename(root) == "configs"
)


def test_zoo_lists_the_baselines():
    assert {"retinanet_R50.py", "fcos_R50.py", "quick_schedules/retinanet_instant_test.py"} <= set(CONFIGS)


@pytest.mark.parametrize("path", CONFIGS + PROJECT_CONFIGS)
def test_config_loads_instantiates_and_round_trips(path, tmp_path):
    cfg = LazyConfig.load(path if os.path.isabs(path) else get_config_file(path))
    for key in ("model", "optimizer", "lr_multiplier", "dataloader", "train"):
        assert key in cfg, f"{path} has no {key}"
    out, out2 = tmp_path / "config.yaml", tmp_path / "again.yaml"
    LazyConfig.save(cfg, str(out))
    again = LazyConfig.load(str(out))
    LazyConfig.save(again, str(out2))
    # save() falls back to a pickle and writes a broken yaml when something is not serialisable.
    assert not (tmp_path / "config.yaml.pkl").exists(), "config holds an object yaml cannot store"
    assert out.read_text() == out2.read_text()
    # Detectron2 writes the shortest import path that resolves; what matters is the class.
    target = cfg.model._target_
    assert locate(again.model._target_) is (locate(target) if isinstance(target, str) else target)
    # Interpolations stay interpolations (MAL's model.max_iter follows train.max_iter), not frozen values.
    for key, value in OmegaConf.to_container(cfg.model, resolve=False).items():
        if value == "${..train.max_iter}":
            again.train.max_iter = 7
            assert again.model[key] == 7, key
    # On the meta device: every constructor runs with the config's arguments (what this test
    # checks) but no weight is allocated or initialised, 5-7x faster for the full-size models.
    with torch.device("meta"):
        model = instantiate(again.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    instantiate(again.lr_multiplier)


def test_unknown_override_key_lists_close_matches():
    cfg = load_config(get_config_file("retinanet_R50.py"))
    with pytest.raises(KeyError, match=r"Did you mean train\.max_iter"):
        check_override_keys(cfg, ["train.max_itr=3"])
    with pytest.raises(ValueError, match="key=value"):
        check_override_keys(cfg, ["train.max_iter"])
    check_override_keys(cfg, ["train.max_iter=3", "+train.new_key=1", "model.head.prior_prob=0.02"])
    # Constructor arguments the config leaves at their default are real keys...
    check_override_keys(cfg, ["model.test_score_thresh=0.0", "model.max_detections_per_image=5"])
    # ...but a misspelt one is not.
    with pytest.raises(KeyError, match="model.test_score_thres'"):
        check_override_keys(cfg, ["model.test_score_thres=0.0"])


def test_overrides_apply_and_plus_adds_a_key():
    cfg = load_config(get_config_file("retinanet_R50.py"), ["train.max_iter=7", "+train.note=hello", "model.test_score_thresh=0.3"])
    assert cfg.train.max_iter == 7 and cfg.train.note == "hello"
    assert instantiate(cfg.model).test_score_thresh == 0.3
