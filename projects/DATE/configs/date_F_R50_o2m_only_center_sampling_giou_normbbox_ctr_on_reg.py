"""Control: ``date_F_R50_o2m_only_center_sampling_giou_normbbox.py`` with mmdet FCOSHead's
``centerness_on_reg`` (``model.head.o2m_centerness_on_reg = True``): the one-to-many centerness is
predicted from the box tower, as in Detectron2's FCOS, instead of DATE's class tower. With centre
sampling, the GIoU loss and stride-normalised sides, this is mmdet's "FCOS with improvements" on
DATE's head; what still differs from Detectron2's FCOS is the rest of the head (the learnable
per-level scale shared with the one-to-one predictor) and the decoding. Not part of the paper.
"""
from .date_F_R50_o2m_only_center_sampling_giou_normbbox import dataloader, lr_multiplier, model, optimizer, train

model.head.o2m_centerness_on_reg = True
train.output_dir = "./output/date_F_R50_o2m_only_center_sampling_giou_normbbox_ctr_on_reg"
