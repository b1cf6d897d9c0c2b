"""Control: ``date_F_R50_o2m_fcos_form_separate_towers_scales.py`` with the one-to-one towers reading
the FPN features detached in training (``model.head.o2o_detach_features = True``): the one-to-one
loss trains only its own towers and predictors, and the backbone and FPN learn from the one-to-many
branch alone. Its one-to-many branch, evaluated with NMS, then trains as the branch alone does
(``date_F_R50_o2m_only_center_sampling_giou_normbbox_ctr_on_reg.py``), except that DATE's
whole-model gradient clip (L2 norm 0.1) still counts the one-to-one head's gradients; the gap between
the two measures what sharing the backbone and FPN costs that branch. Not part of the paper's DATE-F
defaults.
"""
from .date_F_R50_o2m_fcos_form_separate_towers_scales import dataloader, lr_multiplier, model, optimizer, train

model.head.o2o_detach_features = True
train.output_dir = "./output/date_F_R50_o2m_fcos_form_o2o_detached"
