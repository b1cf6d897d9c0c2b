"""Control: DATE-F with its one-to-one branch switched off (λ_o2o = 0), evaluated on its
one-to-many branch (``model.test_branch = "o2m"``: mmdet-style FCOS decoding with NMS). This is
the FCOS-style detector inside DATE-F trained alone: beside FCOS it measures DATE's head and
one-to-many losses (mmdet's FCOS: no centre sampling, ltrb in pixels, IoU loss); beside DATE-F's own
one-to-many branch (``date_F_R50_1x.py`` evaluated with ``model.test_branch=o2m``) it measures what
training the one-to-one branch beside it does to the shared towers. Same model, data, optimizer and
schedule as ``configs/date_F_R50_1x.py``; the o2o head is still built (its losses are logged,
weighted 0) so checkpoints load into either config.
"""
from ....configs.date_F_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.lambda_o2o = 0.0
model.test_branch = "o2m"
train.output_dir = "./output/date_F_R50_o2m_only"
