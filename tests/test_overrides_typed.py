"""Typed overrides and README's custom-dataset recipe on every zoo config (issue 14, items 5-6)."""
import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402
from _cli import instant_config, train_net  # noqa: E402

from alignment_det.config import check_override_types, load_config  # noqa: E402
from alignment_det.model_zoo import get_config_file, list_configs  # noqa: E402

RETINANET = get_config_file("retinanet_R50.py")

BAD = {
    # override: (key, expected type in the message)
    "train.max_iter=abc": ("train.max_iter", "an int"),
    "train.max_iter=1.5": ("train.max_iter", "an int"),
    "train.max_iter=true": ("train.max_iter", "an int"),
    "optimizer.lr=abc": ("optimizer.lr", "a float"),
    "optimizer.lr=false": ("optimizer.lr", "a float"),
    "train.amp.enabled=yes": ("train.amp.enabled", "a bool"),
    "train.amp.enabled=1": ("train.amp.enabled", "a bool"),
    "train.device=0": ("train.device", "a str"),
    "model.head.conv_dims=256": ("model.head.conv_dims", "a list"),
    "train.amp=fp16": ("train.amp", "a dict"),
    # an argument the config leaves at its default: the type of the default (0.05)
    "model.test_score_thresh=abc": ("model.test_score_thresh", "a float"),
    # the annotation of get_dataset_dicts(names: Union[str, Sequence[str]])
    "dataloader.train.dataset.names=5": ("dataloader.train.dataset.names", "a str or a list"),
}


@pytest.mark.parametrize("override", list(BAD))
def test_a_value_of_the_wrong_type_is_rejected_naming_key_value_and_type(override):
    key, expected = BAD[override]
    value = override.split("=", 1)[1]
    with pytest.raises(TypeError) as e:
        load_config(RETINANET, [override])
    assert f"{key} expects {expected}, got {value!r}" in str(e.value)


GOOD = [
    "optimizer.lr=1",  # an int for a float key
    "optimizer.lr=0.02",
    "train.max_iter=7",
    "train.amp.enabled=true",
    "train.output_dir=/tmp/x",
    'train.device="0"',  # a quoted number is a string
    "model.head.conv_dims=[64,64]",
    "dataloader.train.dataset.names=[a_train,b_train]",  # a list where the annotation allows it
    "+train.new_key=3",  # added keys are not checked
    "train.max_iter=${train.eval_period}",  # interpolations are not checked
    "dataloader.evaluator.output_dir=7",  # absent, default None: anything
]


@pytest.mark.parametrize("override", GOOD)
def test_values_that_fit_are_accepted(override):
    check_override_types(load_config(RETINANET), [override])


def test_none_valued_keys_accept_anything():
    cfg = load_config(get_config_file("retinanet_conf_R50.py"))
    assert cfg.model.test_obj_thresh is None
    check_override_types(cfg, ["model.test_obj_thresh=0.5"])
    assert load_config(get_config_file("retinanet_conf_R50.py"), ["model.test_obj_thresh=0.5"]).model.test_obj_thresh == 0.5


def test_bad_type_on_the_command_line_fails_before_anything_is_built(tmp_path):
    proc = train_net("--config-file", instant_config("fcos_instant_test.py"), f"train.output_dir={tmp_path}",
                     "train.max_iter=abc", check=False)
    assert proc.returncode != 0
    assert "train.max_iter expects an int, got 'abc' (a str)" in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written before the config is valid"


# ----------------------------------------------------------------------------- README's recipe
RECIPE = [
    "dataloader.train.dataset.names=mydata_train",
    "dataloader.test.dataset.names=mydata_val",
    "model.num_classes=6",
]


def _classifier_outputs(model):
    """Output sizes of the classification layers (``*cls_score``) of a built model."""
    out = []
    for name, module in model.named_modules():
        if name.endswith("cls_score"):
            out.append(getattr(module, "out_channels", None) or module.out_features)
    return out


@pytest.mark.parametrize("path", list_configs())
def test_readme_recipe_applies_to_every_zoo_config(path):
    cfg = load_config(get_config_file(path), RECIPE)
    assert cfg.dataloader.train.dataset.names == "mydata_train"
    assert cfg.dataloader.test.dataset.names == "mydata_val"
    assert cfg.dataloader.evaluator.dataset_name == "mydata_val"
    with torch.device("meta"):  # the layer shapes are what is checked: no weights needed
        model = instantiate(cfg.model)
    assert model.num_classes == 6
    outputs = _classifier_outputs(model)
    # K per anchor (1 or 9 anchors) for dense heads, K + 1 (background) for Faster R-CNN's ROI head.
    assert outputs and all(o in {6 * a for a in range(1, 10)} | {7} for o in outputs), outputs
