"""HCRAL-ATSS (EATSS + HCRA-C + HCRA-R), tiny, on the synthetic dataset: trains on CPU (the head keeps
its GN, whose 32 groups divide the tiny head's 64 channels)."""
from ..hcral_atss_R50_1x import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/hcral_atss_instant_test"
)
