"""ATSS (IoU quality) + HCRA-C alone, with GHM's β capped at 50 (a diagnostic, not in the paper).

On a small batch with few positives, the GHM bins that hold the positives hold a handful of elements,
so their β runs to hundreds or thousands while the wrong classes at the same priors, which share
their bins with many near-object negatives, get β below 70. The cap (the value the GHM issue
tracker suggests when few elements make β explode) tells whether that imbalance is what costs.
"""
from .atss_hcrac_only import dataloader, lr_multiplier, model, optimizer, train

model.hcrac.beta_cap = 50.0
train.output_dir = "./output/hcral_ablations/atss_hcrac_beta_cap50"
