"""Inference filter: drop candidates whose object confidence is <= 0.5 before threshold / top-k /
NMS, on top of a = 0.4 fusion (paper Table 4: no effect on AP). Inference only."""
from ....configs.retinanet_conf_R50 import dataloader, lr_multiplier, model, optimizer, train

model.test_obj_thresh = 0.5
train.output_dir = "./output/retinanet_conf_ablations/obj_thresh05"
