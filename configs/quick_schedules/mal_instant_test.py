"""MAL, tiny, on the synthetic dataset: 100 iterations, a few minutes on a small CPU.

``model.max_iter`` interpolates ``train.max_iter``, so selection and depression schedules run their
whole course over the 100 instant-test iterations (or over a shorter ``train.max_iter=`` override).
"""
from ..mal_R50 import dataloader, model, optimizer, train
from .instant_common import shrink

lr_multiplier = shrink(model, dataloader, optimizer, train, output_dir="./output/mal_instant_test", p6p7_from_c5=True)
# The bag loss is normalised per ground truth (1-4 per synthetic image), not by an EMA of ~100 positive
# anchors as RetinaNet's focal loss is, so at lr 0.01 the from-scratch tiny net sees gradient spikes
# (norm 40-12000 against ~1 normally) and collapsed to all-zero scores by iteration 70 in our runs.
# Clipping the full-model gradient norm (as mmdet's FreeAnchor configs do, at 35 for R50) keeps it
# training; 10 fits this model's typical norm of 0.5-5.
train.clip_grad.enabled = True
train.clip_grad.clip_type = "full_model"
train.clip_grad.clip_value = 10.0
