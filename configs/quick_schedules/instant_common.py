"""Shrinks a COCO config for the instant tests: the ``instant`` preset of
``alignment_det.model_zoo.presets`` (ResNet-18 from scratch, 64-channel FPN and head, the
synthetic shapes dataset at ~128 px, 100 iterations on CPU)."""
from typing import Optional

from alignment_det.model_zoo.presets import detector_node, scale_down

from ..common.data.synthetic import NUM_CLASSES

INSTANT_PRESET = "instant"


def shrink(model, dataloader, optimizer, train, *, output_dir: str, p6p7_from_c5: Optional[bool] = None):
    """Make ``model`` tiny and point ``dataloader`` at the synthetic set; returns the LR multiplier.

    ``p6p7_from_c5`` is read from the config (``top_block.in_feature``); passing it only checks it.
    """
    if p6p7_from_c5 is not None:
        reads_p5 = detector_node(model).backbone.top_block.get("in_feature", "res5") == "p5"
        if p6p7_from_c5 == reads_p5:
            raise ValueError(f"p6p7_from_c5={p6p7_from_c5}, but the config's P6/P7 read {'P5' if reads_p5 else 'C5'}")
    return scale_down(
        model, dataloader, optimizer, train, INSTANT_PRESET,
        train_dataset="synthetic_shapes_train", test_dataset="synthetic_shapes_val",
        num_classes=NUM_CLASSES, seed=0, output_dir=output_dir,
    )
