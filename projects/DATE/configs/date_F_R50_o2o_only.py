"""Control: DATE-F with its one-to-many branch switched off (λ_o2m = 0), i.e. the one-to-one
(OneNet / POTO-style) detector alone, the baseline DATE's paper measures its faster convergence
against. Same model, data, optimizer and schedule as ``configs/date_F_R50_1x.py``; the o2m head is
still built (its losses are logged, weighted 0) so checkpoints load into either config.
"""
from ....configs.date_F_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.lambda_o2m = 0.0
train.output_dir = "./output/date_F_R50_o2o_only"
