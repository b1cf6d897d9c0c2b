"""Control: ``date_F_R50_o2m_only_center_sampling.py`` with Detectron2 FCOS's box loss in the
one-to-many branch (``model.o2m_box_loss = "giou"``: Σ_pos (1 - GIoU) / #pos, unweighted).

DATE's one-to-many branch follows mmdet's FCOS: -ln IoU weighted by each positive's centerness
target. On cards, that branch trained alone with centre sampling still trailed FCOS trained with the
same optimizer by about 10 AP; it differs from Detectron2's FCOS in its head, its box sides (pixels
through ``exp``, not strides through a linear map) and this loss. Beside its base this measures
the loss alone; nothing else changes. Not part of the paper.
"""
from .date_F_R50_o2m_only_center_sampling import dataloader, lr_multiplier, model, optimizer, train

model.o2m_box_loss = "giou"
train.output_dir = "./output/date_F_R50_o2m_only_center_sampling_giou"
