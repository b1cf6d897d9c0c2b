"""Box-loss variant: smooth-L1 on the deltas instead of the paper's L1.

beta = 1/9 is mmdetection's SmoothL1Loss setting for RetinaNet (Detectron2's yacs default is 0.1);
the paper does not give its value."""
from ....configs.retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model.smooth_l1_beta = 1.0 / 9
train.output_dir = "./output/retinanet_conf_ablations/loss_smooth_l1"
