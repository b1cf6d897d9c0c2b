"""FCOS, tiny, on the synthetic dataset: trains in well under a minute on CPU (the head keeps
its GN, whose 32 groups divide the tiny head's 64 channels)."""
from ..fcos_R50 import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/fcos_instant_test"
)
