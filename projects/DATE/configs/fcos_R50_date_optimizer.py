"""Ablation: Detectron2's FCOS R50-FPN (``configs/fcos_R50.py``) trained with DATE's optimizer.

AdamW 4e-4 with the backbone (ResNet) at lr x0.1 and full-model gradient clipping at L2 norm 0.1,
exactly as ``configs/date_F_R50_1x.py`` (docs/methods.md#date-defaults); model, data and schedule are FCOS's.
Beside FCOS (SGD) and DATE-F (AdamW) it tells how much of a difference between the two comes from
the optimizer rather than from DATE's dual assignment, e.g. in ``benchmarks/accuracy.py``::

    python benchmarks/accuracy.py --preset cpu --configs fcos_R50.py \\
        projects/DATE/configs/fcos_R50_date_optimizer.py date_F_R50_1x.py --output output/date_optimizer
"""
from ....configs.date_F_R50_1x import optimizer
from ....configs.fcos_R50 import dataloader, lr_multiplier, model, train

train.clip_grad = dict(enabled=True, clip_type="full_model", clip_value=0.1, norm_type=2.0)
train.output_dir = "./output/fcos_R50_date_optimizer"
