"""Control: ``date_F_R50_o2m_fcos_form_separate_towers.py`` with the one-to-many predictor's own
per-level scales as well (``model.head.share_scales = False``). With separate towers, the DATE head
still multiplies both branches' box outputs by one set of learnable per-level scales (as the DATE
code does); with this switch the two branches share only the backbone and FPN. On cards the
one-to-many branch with separate towers scored 61.1, against 70.0 trained alone; this asks whether the
shared scales are part of that gap. Not part of the paper's DATE-F defaults.
"""
from .date_F_R50_o2m_fcos_form_separate_towers import dataloader, lr_multiplier, model, optimizer, train

model.head.share_scales = False
train.output_dir = "./output/date_F_R50_o2m_fcos_form_separate_towers_scales"
