"""DATE-F R50-FPN, 12 epochs on COCO (docs/methods.md#date; paper: 37.3 AP).

Detectron2's FCOS R50-FPN with the DATE head (shared towers, o2o + FCOS-style o2m predictors), the
o2o branch alone at test time (no NMS), AdamW 4e-4 with backbone lr x0.1, full-model gradient clipping
at L2 norm 0.1 and a 1000-iteration linear warm-up from x0.001 (docs/methods.md#date-defaults, the DATE code's adamw_1x).
Training data: single scale (1333, 800) + flip, as the DATE code's coco_det_1x.

Schedule: Detectron2's 1x (90k iterations at 16 images, decays at 60k / 80k), i.e. 12.3 epochs with
decays at epochs 8.2 / 10.9 of COCO train2017's 117,266 images with boxes, for the DATE code's
12 epochs with decays at 8 / 11.
"""
from detectron2.config import LazyCall as L

from alignment_det.modeling.heads.date_head import DATEHead
from alignment_det.modeling.meta_arch.date import DATE

from .common.data.augmentations import resize_flip
from .common.data.coco import dataloader
from .common.models.fcos import model
from .common.optim import AdamW as optimizer
from .common.optim import backbone_lr_factor
from .common.schedules import schedule
from .common.train import train

# --- model: FCOS R50-FPN (P6/P7 from P5) + DATE head -------------------------------------------
model._target_ = DATE
del model.test_nms_thresh  # no NMS
model.o2m = "fcos"
model.o2o_matcher = "poto"
model.poto_alpha = 0.8
model.center_radius = 1.5
model.empty_center_fallback = True  # deviation from the code, docs/methods.md#date-choices
model.o2o_loss_weights = (2.0, 5.0, 2.0)
model.lambda_o2o = 1.0
model.lambda_o2m = 1.0
model.test_score_thresh = 0.01
model.test_topk_candidates = 100
model.max_detections_per_image = 100
# The base's FCOSHead node keeps input_shape (5 x 256 channels), num_classes, conv_dims (4 x 256),
# prior_prob 0.01 and norm "GN".
model.head._target_ = DATEHead
model.head.o2m = "${..o2m}"
model.head.share_subnets = True
model.head.use_3dmf = False

# --- optimizer (docs/methods.md#date-defaults) --------------------------------------------------------------------------
optimizer.lr = 4e-4
optimizer.weight_decay = 1e-4
# mmdet's custom_keys={'backbone': lr_mult 0.1, decay_mult 1.0}: norm layers keep weight decay.
optimizer.params.weight_decay_norm = 1e-4
optimizer.params.lr_factor_func = L(backbone_lr_factor)(factor=0.1)
train.clip_grad = dict(enabled=True, clip_type="full_model", clip_value=0.1, norm_type=2.0)

# --- data: (1333, 800) single scale + flip ----------------------------------------------------
dataloader.train.mapper.augmentations = resize_flip(800, max_size=1333)

lr_multiplier = schedule(train, 90000, warmup_iters=1000, warmup_factor=0.001)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/date_F_R50_1x"
