"""alignment_det: Detectron2 methods that align classification with localization.

Importing the package is cheap and needs torch only. The pure tensor layer
(``assigners``, ``losses``, ``layers``, ``balancing``, ``utils``) never imports
Detectron2 or torchvision; ``modeling``, ``engine``, ``data``, ``evaluation`` and
``model_zoo`` need Detectron2.
"""

__version__ = "0.1.0"
