"""Detectron2's GeneralizedRCNN with the number of classes on the model node.

Every other zoo model takes ``num_classes`` at the top of its config (``model.num_classes``);
``GeneralizedRCNN`` has it only inside ``roi_heads``, so README's custom-dataset recipe
(``model.num_classes=K``) failed on the Faster R-CNN configs. This subclass only accepts and
records ``num_classes``; its config sets ``model.roi_heads.num_classes = "${..num_classes}"``.
Modules, forward and checkpoint keys are GeneralizedRCNN's.
"""
from detectron2.modeling.meta_arch import GeneralizedRCNN

__all__ = ["FasterRCNN"]


class FasterRCNN(GeneralizedRCNN):
    def __init__(self, *, num_classes: int, **kwargs):
        """
        Args:
            num_classes: foreground classes K; must equal ``roi_heads.num_classes``.
            kwargs: GeneralizedRCNN's (``backbone``, ``proposal_generator``, ``roi_heads``, ...).
        """
        super().__init__(**kwargs)
        heads_classes = getattr(self.roi_heads, "num_classes", num_classes)
        if heads_classes != num_classes:
            raise ValueError(
                f"FasterRCNN: num_classes={num_classes} but roi_heads.num_classes={heads_classes}; set "
                "model.num_classes only (the config's roi_heads.num_classes follows it as ${..num_classes})."
            )
        self.num_classes = num_classes
