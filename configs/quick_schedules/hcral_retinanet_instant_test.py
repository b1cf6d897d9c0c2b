"""HCRAL-RetinaNet (HCRA-C + HCRA-R), tiny, on the synthetic dataset: trains on CPU."""
from ..hcral_retinanet_R50_1x import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/hcral_retinanet_instant_test"
)
