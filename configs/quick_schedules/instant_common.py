"""Shrinks a COCO config for the instant tests: the ``instant`` preset of
``alignment_det.config.presets`` (ResNet-18 from scratch, 64-channel FPN and head, the
synthetic shapes dataset at ~128 px, 100 iterations on CPU)."""
from typing import Optional

from detectron2.layers import ShapeSpec

from alignment_det.config.presets import (
    detector_node,
    get_preset,
    scale_backbone,
    scale_down_and_get_lr_multiplier,
    set_data,
    set_schedule,
)

from ..common.data.synthetic import NUM_CLASSES

INSTANT_PRESET = "instant"
_DATA = dict(train_dataset="synthetic_shapes_train", test_dataset="synthetic_shapes_val")


def shrink_and_get_lr_multiplier(model, dataloader, optimizer, train, *, output_dir: str, p6p7_from_c5: Optional[bool] = None):
    """Make the dense detector ``model`` tiny and point ``dataloader`` at the synthetic set;
    returns the LR multiplier.

    ``p6p7_from_c5`` is read from the config (``top_block.in_feature``); passing it only checks it.
    """
    if p6p7_from_c5 is not None:
        reads_p5 = detector_node(model).backbone.top_block.get("in_feature", "res5") == "p5"
        if p6p7_from_c5 == reads_p5:
            raise ValueError(f"p6p7_from_c5={p6p7_from_c5}, but the config's P6/P7 read {'P5' if reads_p5 else 'C5'}")
    return scale_down_and_get_lr_multiplier(
        model, dataloader, optimizer, train, INSTANT_PRESET, **_DATA,
        num_classes=NUM_CLASSES, seed=0, output_dir=output_dir,
    )


def shrink_two_stage_and_get_lr_multiplier(model, dataloader, optimizer, train, *, output_dir: str):
    """:func:`shrink_and_get_lr_multiplier` for Faster R-CNN (``GeneralizedRCNN``): the preset's backbone, a tiny RPN and box
    head, fewer proposals."""
    preset = get_preset(INSTANT_PRESET)
    scale_backbone(model, preset)
    channels = preset.channels
    model.proposal_generator.head.in_channels = channels
    model.proposal_generator.pre_nms_topk = (200, 100)
    model.proposal_generator.post_nms_topk = (64, 64)
    model.num_classes = NUM_CLASSES  # roi_heads.num_classes follows it
    model.roi_heads.batch_size_per_image = 64
    model.roi_heads.box_head.input_shape = ShapeSpec(channels=channels, height=7, width=7)
    model.roi_heads.box_head.fc_dims = [2 * channels]
    model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=2 * channels)
    set_data(dataloader, preset, **_DATA, output_dir="${...train.output_dir}")
    return set_schedule(optimizer, train, preset, seed=0, output_dir=output_dir)
