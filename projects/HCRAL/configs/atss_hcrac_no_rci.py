"""ATSS (IoU quality) + HCRA-C alone, without the RCI factor (Table 1's "no RCI" row, on ATSS).

A diagnostic for ``atss_hcrac_only.py``: in the default mirrored RCI mode a positive whose score has
reached the IoU of its predicted box gets no classification loss, so its score is held at that IoU.
Dropping the factor keeps the GHM harmoniser and the IoU conditioning ω, and lets positives climb to 1.
"""
from .atss_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.use_rci = False
train.output_dir = "./output/hcral_ablations/atss_hcrac_no_rci"
