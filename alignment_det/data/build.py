"""Dataset-dict builders that configs call, checking datasets before loading them."""
from detectron2.data import get_detection_dataset_dicts

from .register import check_datasets


def get_dataset_dicts(names, **kwargs):
    """``detectron2.data.get_detection_dataset_dicts`` after :func:`check_datasets`."""
    check_datasets(names)
    return get_detection_dataset_dicts(names, **kwargs)
