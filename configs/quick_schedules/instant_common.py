"""Shrinks a COCO config for the instant tests: the ``instant`` preset of
``alignment_det.config.presets`` (ResNet-18 from scratch, 64-channel FPN and head, the
synthetic shapes dataset at ~128 px, 100 iterations on CPU)."""
from detectron2.layers import ShapeSpec

from alignment_det.config.presets import (
    get_preset,
    scale_backbone,
    scale_down_and_get_lr_multiplier,
    set_data,
    set_schedule,
)

from ..common.data.synthetic import NUM_CLASSES

INSTANT_PRESET = "instant"
_DATA = dict(train_dataset="synthetic_shapes_train", test_dataset="synthetic_shapes_val")


def shrink_and_get_lr_multiplier(model, dataloader, optimizer, train, *, output_dir: str):
    """Make the dense detector ``model`` tiny (P6/P7 read C5 or P5 as the config's ``top_block``
    says) and point ``dataloader`` at the synthetic set; returns the LR multiplier."""
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
