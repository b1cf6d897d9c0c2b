"""Meta-architectures: thin subclasses of Detectron2's RetinaNet / FCOS."""
from .retinanet_conf import RetinaNetConf

__all__ = ["RetinaNetConf"]
