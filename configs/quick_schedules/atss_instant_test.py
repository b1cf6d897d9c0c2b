"""ATSS, tiny, on the synthetic dataset: trains in well under a minute on CPU (the head keeps
its GN, whose 32 groups divide the tiny head's 64 channels)."""
from ..atss_R50_1x import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/atss_instant_test"
)
