"""Control: ``date_F_R50_o2m_only_center_sampling_giou.py`` with mmdet FCOSHead's ``norm_on_bbox``
(``model.head.o2m_norm_on_bbox = True``): the one-to-many box sides are ``relu(scale_l · x)`` in units
of the level's stride, as Detectron2's FCOS predicts them (linear, stride-normalised), instead of
DATE's ``exp(scale_l · x)`` in pixels. One more step of the one-to-many branch towards Detectron2's
FCOS; nothing else changes. Not part of the paper.
"""
from .date_F_R50_o2m_only_center_sampling_giou import dataloader, lr_multiplier, model, optimizer, train

model.head.o2m_norm_on_bbox = True
train.output_dir = "./output/date_F_R50_o2m_only_center_sampling_giou_normbbox"
