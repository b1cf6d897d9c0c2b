"""Fusion exponent a = 1.0 in s = s_cls^(1-a) * s_obj^a: object confidence only. Every class of
an anchor then gets the same score, so the end point of the sweep rather than a usable setting.

Inference only: evaluate a model trained with configs/retinanet_conf_R50.py, e.g.
    python train_net.py --config-file projects/RetinaNetConf/configs/fusion_a10.py --eval-only \
        train.init_checkpoint=output/retinanet_conf_R50/model_final.pth
"""
from ....configs.retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model.fusion_alpha = 1.0
train.output_dir = "./output/retinanet_conf_ablations/fusion_a10"
