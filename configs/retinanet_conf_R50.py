"""RetinaNet-Conf R50-FPN 1x on COCO at the paper's input scale (docs/methods.md#retinanet-conf).

Detectron2's RetinaNet R50-FPN with an object-confidence conv on the classification tower
(``RetinaNetConfHead``), ``loss_obj`` on the IoU of each positive's decoded box, and
``s = s_cls^0.6 * s_obj^0.4`` as the ranking score before threshold / top-k / NMS.
Paper (COCO val2017, 1000x600, 1x): RetinaNet 35.3 -> RetinaNet-Conf 36.0 AP.
"""
from detectron2.config import LazyCall as L
from detectron2.data import transforms as T

from alignment_det.modeling.heads.retinanet_conf_head import RetinaNetConfHead
from alignment_det.modeling.meta_arch.retinanet_conf import RetinaNetConf

from .common.data.augmentations import resize_flip
from .retinanet_R50 import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetConf
model.head._target_ = RetinaNetConfHead
# The model keys of docs/methods.md#retinanet-conf-defaults, all explicit so they can be overridden.
model.fusion_alpha = 0.4  # s = cls^(1-a) * obj^a; 0 = rank by the class score alone
model.obj_loss_weight = 1.0
model.neg_weight = 0.0  # 1e-4 = the paper's CELoss_w
model.obj_loss_type = "ce"  # | "gfocal"
model.gfocal_beta = 2.0
model.test_obj_thresh = None  # 0.5 = paper Table 4's confidence filter
# L1 on the deltas, as the paper's mmdet runs (Detectron2's yacs default is smooth-L1 0.1).
model.smooth_l1_beta = 0.0
model.box_reg_loss_type = "smooth_l1"

# The paper's scale, train and test: short side 600, long side <= 1000 (mmdet (1000, 600)).
dataloader.train.mapper.augmentations = resize_flip(600, max_size=1000)
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000)]

# Detectron2's 1x schedule (90k iterations at 16 images, decays at 60k / 80k, lr 0.01), as the
# baseline: the paper's 12 epochs with decays at epochs 8 and 11 are ~88.7k / 59k / 81k iterations.
optimizer.lr = 0.01
train.output_dir = "./output/retinanet_conf_R50"
