"""HCRAL-ATSS (EATSS + HCRA-C + HCRA-R, all at the paper's settings) with GHM's β capped at 50.

Not in the paper. The GHM bins that hold a small batch's positives hold a handful of elements, so
their β runs to hundreds or thousands; on the cards benchmark (4-image batches, about 2 boxes per
image) capping it gave back most of what HCRA-C alone cost ATSS (projects/HCRAL/README.md,
results). This config is the whole method with the cap, what a user with a small dataset would
train. On COCO-sized batches the cap would also crush the ordinary rare-bin weights; keep it off
there (docs/methods.md, "GHM harmoniser").
"""
from ....configs.hcral_atss_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.beta_cap = 50.0
train.output_dir = "./output/hcral_atss_beta_cap50"
