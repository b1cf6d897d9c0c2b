"""Control: ``date_F_R50_o2m_fcos_form_separate_towers_scales.py`` with the one-to-one predictor's
per-level box scales frozen at their initial 1; the one-to-many predictor's own scales still learn.

On cards, separate scales for the one-to-many predictor lifted the NMS-free one-to-one output by
about 4 AP over shared scales, and freezing the shared scales at 1
(``date_F_R50_o2m_fcos_form_separate_towers_frozen_scales.py``) scored like learning them. This
control asks which half of the separate-scales change carries the gain: if the one-to-one branch
needs scales of its own that it can move, this should score like the shared scales; if it is the
one-to-many branch's own scales that help, it should score like separate, learned scales. Not part
of the paper's DATE-F defaults.

With ``share_scales=False`` the one-to-one predictor uses ``head.scales`` and the one-to-many
predictor ``head.o2m_scales``. Detectron2's ``get_default_optimizer_params(overrides=...)`` keys
overrides by a parameter's own name, so ``"scales"`` holds only ``head.scales``; the model and its
checkpoint keys are those of the separate-scales control.
"""
from .date_F_R50_o2m_fcos_form_separate_towers_scales import dataloader, lr_multiplier, model, optimizer, train

optimizer.params.overrides = {"scales": {"lr": 0.0, "weight_decay": 0.0}}
train.output_dir = "./output/date_F_R50_o2m_fcos_form_separate_towers_scales_o2o_frozen"
