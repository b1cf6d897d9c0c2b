"""DATE-F R50-FPN on CrowdHuman, 30k iterations (paper: AP50 90.5 / mMR 49.0 / recall 97.9).

As the DATE code's date_r50_30k_8x2_fcos_poto_crowdhuman (docs/methods.md#date-defaults):
* one class (person, full-body ``fbox``; ignore / mask boxes are crowd regions), loaded from the
  ``.odgt`` files by :mod:`alignment_det.data.crowdhuman` under ``$DETECTRON2_DATASETS/CrowdHuman``;
* the o2o matcher is OneNet's cost (focal 2, L1 5 on normalised cxcywh, GIoU 2) over all locations
  instead of POTO (``model.o2o_matcher="onenet_cost"``);
* up to 500 detections per image, top 1000 per level, score > 0.01, no NMS;
* 30k iterations at 16 images, AdamW 4e-4 (backbone x0.1), decays at 20k / 25k (the code's
  adamw_30k, YiqunChen1999/date 4997f71), multi-scale 640..896 (max 1400) with the DETR-style crop branch; test 800 (max 1400).

Evaluation here is COCO-style AP / AP50 / AR@500 (Detectron2's COCOEvaluator); CrowdHuman's mMR and
its recall protocol are not implemented.
"""
from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator

from alignment_det.data.crowdhuman import crowdhuman_dataset_dicts

from ....configs.common.data.augmentations import detr_multiscale_crop
from ....configs.common.schedules import schedule
from ....configs.date_F_R50_1x import dataloader, model, optimizer, train

MAX_ITER = 30000

model.num_classes = 1
model.o2o_matcher = "onenet_cost"
model.max_detections_per_image = 500
model.test_topk_candidates = 1000

dataloader.train.dataset = L(crowdhuman_dataset_dicts)(split="train")
dataloader.test.dataset = L(crowdhuman_dataset_dicts)(split="val", filter_empty=False)
SCALES = (640, 672, 704, 736, 768, 800, 832, 864, 896)
dataloader.train.mapper.augmentations = detr_multiscale_crop(SCALES, max_size=1400)
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1400)]
dataloader.evaluator = L(COCOEvaluator)(
    dataset_name="crowdhuman_val", max_dets_per_image=500, output_dir="${...train.output_dir}"
)

lr_multiplier = schedule(train, MAX_ITER, [20000, 25000], warmup_iters=1000, warmup_factor=0.001)
train.checkpointer = dict(period=5000, max_to_keep=5)
train.eval_period = 5000
train.output_dir = "./output/date_F_R50_crowdhuman"
