"""Any zoo method on your own dataset: a Pascal VOC folder or a COCO json, on CPU or GPU.

Register your datasets in a Python file (``register_voc`` / ``register_coco_json``), then::

    python train_net.py --register my_datasets.py --config-file configs/examples/custom_voc.py \\
        dataloader.train.dataset.names=myvoc_train dataloader.test.dataset.names=myvoc_val model.num_classes=3

(README: 'Training on your own dataset'). What this config sets on top of the zoo config:

* the method: the zoo config named by ``$ALIGNMENT_DET_BASE_CONFIG`` (default ``mal_R50.py``; any
  name of ``alignment_det.model_zoo.list_configs()`` or a path), with its model, optimizer,
  schedule and ImageNet-pretrained backbone;
* the data: ``dataloader.train.dataset.names`` / ``dataloader.test.dataset.names`` (default
  ``custom_train`` / ``custom_val``), evaluated with COCO AP (``COCOEvaluator``, which converts a
  VOC folder's annotations into ``train.output_dir``); ``model.num_classes`` must be the datasets'
  number of classes (an error before training says so otherwise);
* the device: ``cuda`` when torch sees a GPU, else ``cpu``; ``train.device=cpu`` (or ``cuda:1``)
  chooses. On CPU, ``dataloader.train.total_batch_size=2 train.auto_scale_lr=True`` keeps the
  steps small.
"""
import os

import torch

from alignment_det.config import load_config, resolve_config_file

BASE_CONFIG = os.environ.get("ALIGNMENT_DET_BASE_CONFIG", "mal_R50.py")

_cfg = load_config(resolve_config_file(BASE_CONFIG))
_cfg.dataloader.train.dataset.names = "custom_train"
_cfg.dataloader.test.dataset.names = "custom_val"
# A VOC folder (no COCO json) is converted for COCOEvaluator into its output_dir.
_cfg.dataloader.evaluator.output_dir = "${...train.output_dir}"
_cfg.train.device = "cuda" if torch.cuda.is_available() else "cpu"
_cfg.train.output_dir = "./output/custom_" + os.path.splitext(os.path.basename(BASE_CONFIG))[0]

model, dataloader, optimizer, train, lr_multiplier = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.train, _cfg.lr_multiplier
)
