"""DATE-F, tiny, on the synthetic dataset: trains in well under a minute on CPU.

AdamW, as DATE prescribes, at the instant preset's AdamW lr (1e-3 from scratch); the head keeps
its GN, whose 32 groups divide the tiny head's 64 channels."""
from ..date_F_R50_1x import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/date_instant_test"
)
