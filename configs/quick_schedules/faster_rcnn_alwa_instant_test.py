"""Faster R-CNN + ALWA on the RPN (``faster_rcnn_alwa_R50.py``), tiny, on the synthetic dataset.

C = 10, as the RetinaNet ALWA instant test, so that α is re-estimated within 100 iterations.
"""
from ..faster_rcnn_alwa_R50 import dataloader, model, optimizer, train
from .instant_common import shrink_two_stage_and_get_lr_multiplier

lr_multiplier = shrink_two_stage_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/faster_rcnn_alwa_instant_test"
)
model.alwa.period = 10
