"""MAL, tiny, on the synthetic dataset: 100 iterations, a few minutes on a small CPU.

``model.max_iter`` interpolates ``train.max_iter``, so selection and depression schedules run their
whole course over the 100 instant-test iterations (or over a shorter ``train.max_iter=`` override).
"""
from ..mal_R50 import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/mal_instant_test"
)
