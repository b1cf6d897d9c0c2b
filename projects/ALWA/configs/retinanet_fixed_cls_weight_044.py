"""Control, not ALWA: ``retinanet_fixed_cls_weight.py`` with the constant weight ALWA settled at on chess.

On chess at the benchmark's long budget, ALWA set α once, at iteration 119, to 0.44 and kept it for
the rest of the run (its logged ``alwa_weight``). The cards control uses the cards value, 0.58; this
one trains chess's 0.44 from the first iteration without the adaptation, so that beside
``configs/retinanet_alwa_R50.py`` it tells, on chess too, what the adaptation adds over a fixed
lower classification weight.
"""
from .retinanet_fixed_cls_weight import dataloader, lr_multiplier, model, optimizer, train

model.alwa.alpha_init = 0.44
train.output_dir = "./output/retinanet_fixed_cls_weight_044"
