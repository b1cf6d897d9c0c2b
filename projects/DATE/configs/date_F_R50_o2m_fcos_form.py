"""Control: DATE-F, both branches, with its one-to-many branch in Detectron2 FCOS's form: centre
sampling (radius 1.5 strides), the GIoU box loss without centerness weight, box sides in strides
(``relu(scale_l · x)``) and centerness from the box tower. DATE's own one-to-many branch follows
mmdet's plain FCOS (none of the four). The one-to-one branch, its matching, the NMS-free inference,
the optimizer and the schedule are DATE-F's. Beside ``configs/date_F_R50_1x.py`` it tells whether the
one-to-many form that helps that branch alone (``date_F_R50_o2m_only_center_sampling_giou_normbbox_ctr_on_reg.py``)
also helps the whole detector. Not part of the paper.
"""
from ....configs.date_F_R50_1x import dataloader, lr_multiplier, model, optimizer, train

model.o2m_center_sampling_radius = 1.5
model.o2m_box_loss = "giou"
model.head.o2m_norm_on_bbox = True
model.head.o2m_centerness_on_reg = True
train.output_dir = "./output/date_F_R50_o2m_fcos_form"
