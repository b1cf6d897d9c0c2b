"""Control: ``date_F_R50_o2m_fcos_form.py`` with separate towers for the one-to-many branch
(``model.head.share_subnets = False``, the paper's "not sharing subnets", Table 9). On cards the
one-to-many branch in Detectron2 FCOS's form scored 70.0 trained alone and 55.3 and 63.8 (two seeds)
trained beside the one-to-one branch through shared towers; this asks whether the shared towers are
what costs it.
Not part of the paper's DATE-F defaults.
"""
from .date_F_R50_o2m_fcos_form import dataloader, lr_multiplier, model, optimizer, train

model.head.share_subnets = False
train.output_dir = "./output/date_F_R50_o2m_fcos_form_separate_towers"
