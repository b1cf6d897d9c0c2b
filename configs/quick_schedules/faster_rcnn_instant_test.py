"""Faster R-CNN, tiny, on the synthetic dataset: the two-stage baseline of the instant tests."""
from ..faster_rcnn_R50 import dataloader, model, optimizer, train
from .instant_common import shrink_two_stage_and_get_lr_multiplier

lr_multiplier = shrink_two_stage_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/faster_rcnn_instant_test"
)
