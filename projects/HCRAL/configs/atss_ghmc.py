"""ATSS (IoU quality) with GHM-C in place of focal loss: HCRA-C without its RCI factor and without its
IoU conditioning (ω = 1), which leaves only its GHM harmoniser β (mmdet's GHM-C, M 20, momentum 0.75).

A diagnostic for HCRA-C's cost on small data, beside ``atss_hcrac_only.py`` (all three factors) and
``atss_hcrac_no_rci.py`` (β and ω): if GHM-C alone loses as much against the IoU-quality control,
the harmoniser is what costs, not the paper's two factors.
"""
from .atss_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.use_rci = False
model.hcrac.use_iou_conditioning = False
train.output_dir = "./output/hcral_ablations/atss_ghmc"
