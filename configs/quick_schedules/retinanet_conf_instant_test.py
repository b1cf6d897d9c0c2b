"""RetinaNet-Conf, tiny, on the synthetic dataset: trains in well under a minute on CPU."""
from ..retinanet_conf_R50 import dataloader, model, optimizer, train
from .instant_common import shrink_and_get_lr_multiplier

lr_multiplier = shrink_and_get_lr_multiplier(
    model, dataloader, optimizer, train, output_dir="./output/retinanet_conf_instant_test"
)
