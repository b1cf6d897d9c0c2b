"""alignment_det: Detectron2 methods that align classification with localization.

Importing the package is cheap and needs torch only. The pure tensor layer
(``assigners``, ``losses``, ``layers``, ``utils``) never imports
Detectron2 or torchvision; ``config``, ``checkpoint``, ``data``, ``modeling``,
``evaluation``, ``engine`` and ``model_zoo`` need Detectron2. Each floor imports only from
itself and the floors below it (tests/test_layering.py):
pure layer < config, checkpoint, data < modeling < evaluation < engine < model_zoo.
"""

__version__ = "0.1.0"
