"""Fusion exponent a = 0.2 in s = s_cls^(1-a) * s_obj^a; paper: a in 0.2-0.4 all give 36.0 AP.

Inference only: evaluate a model trained with configs/retinanet_conf_R50.py, e.g.
    python train_net.py --config-file projects/RetinaNetConf/configs/fusion_a02.py --eval-only \
        train.init_checkpoint=output/retinanet_conf_R50/model_final.pth
"""
from ....configs.retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model.fusion_alpha = 0.2
train.output_dir = "./output/retinanet_conf_ablations/fusion_a02"
