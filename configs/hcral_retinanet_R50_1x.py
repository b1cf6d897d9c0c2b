"""HCRA-C + HCRA-R on RetinaNet R50-FPN, 1x COCO (docs/methods.md#hcral-on-retinanet; the paper's ablations: FL 36.5 -> HCRA-C 37.6,
L1 36.5 -> HCRA-R 37.4, on mmdet's RetinaNet). Everything else is ``retinanet_R50.py`` (Detectron2's
RetinaNet: its data, solver and 1x schedule), so the two compare pair-wise."""
from .common.models.hcral_retinanet import model
from .retinanet_R50 import dataloader, lr_multiplier, optimizer, train

train.output_dir = "./output/hcral_retinanet_R50_1x"
