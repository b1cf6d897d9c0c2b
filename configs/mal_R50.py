"""MAL R50-FPN on COCO (docs/methods.md#mal-defaults, code values of ``DeLightCMU/MAL`` ``mal_R-50-FPN.yaml``).

RetinaNet R50-FPN with MAL's bag loss, all -> top-1 selection and symmetric-step anchor depression;
16 images/batch, SGD lr 0.01, warm-up 500 it, 135k iterations with decays at 90k / 120k, frozen BN,
classifier prior 0.02, bag size 40 (the paper's Table 1a prefers 50; the released R50 config uses 40),
short side 800.
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.box_regression import Box2BoxTransform

from alignment_det.modeling.meta_arch.mal import MALRetinaNet

from .common.data.augmentations import resize_flip
from .common.data.coco import dataloader
from .common.models.retinanet import model
from .common.optim import SGD as optimizer
from .common.schedules import schedule
from .common.train import train

model._target_ = MALRetinaNet
# Bags replace IoU matching and the focal/Smooth-L1 losses: these RetinaNet keys are unused.
del model.anchor_matcher
del model.focal_loss_alpha
del model.focal_loss_gamma
# docs/methods.md#mal-defaults: MAL's box coder, used by the bag loss and by inference alike.
model.box2box_transform = L(Box2BoxTransform)(weights=[10.0, 10.0, 5.0, 5.0])
model.head.prior_prob = 0.02
# T of lambda = t / T and of the depression schedule follows the training length (resume-safe: t is
# the trainer's iteration).
model.max_iter = "${..train.max_iter}"
model.anchor_bag_size = 40
model.bbox_reg_weight = 0.75
model.bag_smooth_l1_beta = 0.11
model.saturation_thresh = 0.6
model.pos_neg_alpha = 0.5
model.neg_gamma = 2.0
model.selection = "schedule"  # docs/methods.md#mal-choices: the paper's all -> top-1; "all" = released code
model.depression_schedule = "symmetric_step"  # code IA_TYPE=5; "off" disables depression
model.depression_max_ratio = 0.5
model.depression_scale = 0.25

# docs/methods.md#mal-defaults: single-scale training at short side 800 for R50/R101 (maskrcnn-benchmark MIN_SIZE_TRAIN 800).
dataloader.train.mapper.augmentations = resize_flip((800,), max_size=1333)
dataloader.train.total_batch_size = 16

optimizer.lr = 0.01
optimizer.momentum = 0.9
optimizer.weight_decay = 1e-4

train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/mal_R50"

# maskrcnn-benchmark's linear warm-up: 500 iterations from 1/3 of the base lr (WARMUP_FACTOR default).
lr_multiplier = schedule(train, 135000, [90000, 120000], warmup_iters=500, warmup_factor=1.0 / 3)
