"""Heads that differ from Detectron2's RetinaNetHead / FCOSHead."""
from .retinanet_conf_head import RetinaNetConfHead

__all__ = ["RetinaNetConfHead"]
