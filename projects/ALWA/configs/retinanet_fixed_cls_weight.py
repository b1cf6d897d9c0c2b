"""Control, not ALWA: RetinaNet with its classification loss weighted by a constant 0.58.

On cards at the benchmark's long budget, ALWA set α three times in its first 300 iterations and
then kept α = 0.58 for the remaining 2,700 (its logged ``alwa_weight``), because every later window's
weighted classification spread stayed below the box loss's (``a <= b``: no update). This config
trains that weight from the first iteration without the adaptation (``adapt=False``), so its AP
beside ``configs/retinanet_alwa_R50.py`` tells what ALWA's adaptation adds over a fixed lower
classification weight, and beside ``configs/retinanet_R50.py`` what the lower weight alone costs.
On other data, set the weight your ALWA run settled at: ``model.alwa.alpha_init=0.44``.
"""
from ....configs.retinanet_alwa_R50 import dataloader, lr_multiplier, model, optimizer, train

model.alwa.alpha_init = 0.58
model.alwa.adapt = False
train.output_dir = "./output/retinanet_fixed_cls_weight"
