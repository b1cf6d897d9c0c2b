"""RetinaNet, tiny, on the synthetic dataset: trains in well under a minute on CPU."""
from ..retinanet_R50 import dataloader, model, optimizer, train
from .instant_common import shrink

lr_multiplier = shrink(model, dataloader, optimizer, train, output_dir="./output/retinanet_instant_test")
