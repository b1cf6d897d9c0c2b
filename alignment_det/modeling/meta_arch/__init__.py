"""Meta-architectures: thin subclasses of Detectron2's RetinaNet / FCOS."""
from .mal import MALRetinaNet
from .retinanet_conf import RetinaNetConf

__all__ = ["MALRetinaNet", "RetinaNetConf"]
