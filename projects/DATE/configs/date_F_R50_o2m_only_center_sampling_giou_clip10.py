"""Control: ``date_F_R50_o2m_only_center_sampling_giou.py`` with the full-model gradient clip loosened
from DATE's L2 norm 0.1 to 10, as ``date_F_R50_o2m_only_center_sampling_clip10.py`` does for the
-ln IoU form. The four runs (-ln IoU or GIoU, clip 0.1 or 10) tell whether the looser clip helps
any box loss of that branch or only mmdet's -ln IoU. Nothing else changes. Not part of the paper.
"""
from .date_F_R50_o2m_only_center_sampling_giou import dataloader, lr_multiplier, model, optimizer, train

train.clip_grad.clip_value = 10.0
train.output_dir = "./output/date_F_R50_o2m_only_center_sampling_giou_clip10"
