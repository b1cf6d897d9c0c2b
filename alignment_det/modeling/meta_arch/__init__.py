"""Meta-architectures: thin subclasses of Detectron2's RetinaNet / FCOS / GeneralizedRCNN."""
from .date import DATE
from .date_export import DATEExport, export_program, export_torchscript
from .mal import MALRetinaNet
from .rcnn import FasterRCNN
from .retinanet_conf import RetinaNetConf

__all__ = ["DATE", "DATEExport", "FasterRCNN", "MALRetinaNet", "RetinaNetConf", "export_program", "export_torchscript"]
