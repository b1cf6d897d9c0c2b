"""Heads that differ from Detectron2's RetinaNetHead / FCOSHead."""
from .date_head import DATEHead
from .retinanet_conf_head import RetinaNetConfHead

__all__ = ["DATEHead", "RetinaNetConfHead"]
