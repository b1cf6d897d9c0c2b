"""DATE-F + 3D max filtering, R50-FPN, 12 epochs (paper: 38.9 AP vs DeFCN 37.8).

DeFCN's 3DMF on the o2o branch (docs/methods.md#date-head): the o2o probability is ``σ(cls)·σ(f)`` in
matching, loss and inference; no DeFCN auxiliary loss.
"""
from .date_F_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.head.use_3dmf = True
model.head.mf_kernel_size = 3
model.head.mf_tau = 2
model.head.mf_norm_groups = 32
train.output_dir = "./output/date_F_3dmf_R50_1x"
