"""Control: ``date_F_R50_o2m_only.py`` with FCOS's centre sampling in the one-to-many targets
(``model.o2m_center_sampling_radius = 1.5``: positives only within 1.5 strides of a GT's centre, as
Detectron2's FCOS and mmdet's ``center_sampling=True``). DATE's one-to-many branch follows mmdet's
FCOS without it, which makes every location inside a box positive: on large boxes most of them lie
near the border. Beside ``date_F_R50_o2m_only.py`` this measures what that choice costs; nothing
else changes (model, data, optimizer, schedule, evaluation on the one-to-many branch with NMS).
Not part of the paper.
"""
from .date_F_R50_o2m_only import dataloader, lr_multiplier, model, optimizer, train

model.o2m_center_sampling_radius = 1.5
train.output_dir = "./output/date_F_R50_o2m_only_center_sampling"
