"""Heads that differ from Detectron2's RetinaNetHead / FCOSHead."""
from .atss_head import ATSSHead
from .date_head import DATEHead
from .retinanet_conf_head import RetinaNetConfHead
from .vfnet_aux import ModulatedDeformConv3x3, VFNetAux, star_dcn_offsets

__all__ = ["ATSSHead", "DATEHead", "ModulatedDeformConv3x3", "RetinaNetConfHead", "VFNetAux", "star_dcn_offsets"]
