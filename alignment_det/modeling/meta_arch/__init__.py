"""Meta-architectures: thin subclasses of Detectron2's RetinaNet / FCOS."""
from .atss import ATSS
from .date import DATE
from .date_export import DATEExport, export_program, export_torchscript
from .hcral import HCRALATSS, HCRALRetinaNet
from .mal import MALRetinaNet
from .retinanet_conf import RetinaNetConf

__all__ = [
    "ATSS",
    "DATE",
    "DATEExport",
    "HCRALATSS",
    "HCRALRetinaNet",
    "MALRetinaNet",
    "RetinaNetConf",
    "export_program",
    "export_torchscript",
]
