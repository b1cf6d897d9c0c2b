"""Control: ``date_F_R50_o2m_fcos_form_separate_towers.py`` with the per-level box scales that both
branches share frozen at their initial 1 (learning rate and weight decay 0 for ``head.scales``).

On cards, giving the one-to-many predictor its own scales
(``date_F_R50_o2m_fcos_form_separate_towers_scales.py``) lifted the NMS-free one-to-one output by
about 4 AP, although every learned scale stayed between 0.87 and 1.11. One explanation: with shared
scales the one-to-many loss, with many positives per box, moves scales that the one-to-one branch,
with one positive per box, depends on. If that is it, scales that nobody moves should score like
separate scales; if instead the one-to-one branch gains from moving its own scales, this should
score like the shared, learned scales. Not part of the paper's DATE-F defaults.

The freeze is an optimizer override (Detectron2's ``get_default_optimizer_params(overrides=...)``
applies it after DATE's backbone lr factor), so the model and its checkpoint keys are DATE's.
"""
from .date_F_R50_o2m_fcos_form_separate_towers import dataloader, lr_multiplier, model, optimizer, train

optimizer.params.overrides = {"scales": {"lr": 0.0, "weight_decay": 0.0}}
train.output_dir = "./output/date_F_R50_o2m_fcos_form_separate_towers_frozen_scales"
