"""RetinaNet head with an object-confidence output on the classification tower (RetinaNet-Conf).

docs/methods.md#retinanet-conf-head. The only difference from Detectron2's ``RetinaNetHead`` is one more
3x3 conv, ``obj_score``, that reads the *cls_subnet* output (the box tower is what
IoU-aware RetinaNet uses; sharing the classification tower is the point of the paper)
and predicts one confidence logit per anchor.
"""
from typing import List

import torch
from detectron2.config import configurable
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from torch import Tensor, nn

__all__ = ["RetinaNetConfHead"]


class RetinaNetConfHead(RetinaNetHead):
    """``RetinaNetHead`` plus ``obj_score = Conv2d(C, A, 3, padding=1)`` on the classification tower.

    Keyword arguments are those of ``RetinaNetHead`` (``input_shape``, ``num_classes``,
    ``num_anchors``, ``conv_dims``, ``norm``, ``prior_prob``); the parameter names of the
    inherited layers are unchanged, so a Detectron2 RetinaNet checkpoint loads with only
    ``obj_score.{weight,bias}`` missing.
    """

    @configurable  # so RetinaNetHead.from_config (yacs) builds this head too
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        num_anchors = kwargs["num_anchors"]
        conv_dims = kwargs["conv_dims"]
        self.obj_score = nn.Conv2d(conv_dims[-1], num_anchors, kernel_size=3, stride=1, padding=1)
        # docs/methods.md#retinanet-conf-head: N(0, 0.01), bias 0 (sigmoid 0.5), as mmdet's normal_init of the official head.
        # No prior-probability bias: the target is an IoU on positives, not a rare-class label.
        torch.nn.init.normal_(self.obj_score.weight, mean=0, std=0.01)
        torch.nn.init.constant_(self.obj_score.bias, 0)

    def forward(self, features: List[Tensor]):
        """
        Args:
            features: #lvl FPN maps, each (N, C, Hi, Wi), high to low resolution.

        Returns:
            logits: #lvl tensors (N, A*K, Hi, Wi).
            bbox_reg: #lvl tensors (N, A*4, Hi, Wi).
            obj: #lvl tensors (N, A, Hi, Wi), object-confidence logits (one per anchor).
        """
        assert len(features) == self._num_features
        logits, bbox_reg, obj = [], [], []
        for feature in features:
            cls_feature = self.cls_subnet(feature)  # computed once, shared by both outputs
            logits.append(self.cls_score(cls_feature))
            obj.append(self.obj_score(cls_feature))
            bbox_reg.append(self.bbox_pred(self.bbox_subnet(feature)))
        return logits, bbox_reg, obj
