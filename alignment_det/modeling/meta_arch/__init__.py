"""Meta-architectures: thin subclasses of Detectron2's RetinaNet / FCOS / GeneralizedRCNN."""
from .atss import ATSS
from .date import DATE
from .dense import FCOS, RetinaNet
from .date_export import DATEExport, export_program, export_torchscript
from .hcral import HCRALATSS, HCRALRetinaNet
from .mal import MALRetinaNet
from .rcnn import FasterRCNN
from .retinanet_conf import RetinaNetConf

__all__ = [
    "ATSS",
    "DATE",
    "DATEExport",
    "FCOS",
    "FasterRCNN",
    "HCRALATSS",
    "HCRALRetinaNet",
    "MALRetinaNet",
    "RetinaNet",
    "RetinaNetConf",
    "export_program",
    "export_torchscript",
]
