"""ATSS head: Detectron2's ``FCOSHead`` with a learnable ``Scale`` per level (docs/methods.md#atss-detector).

For every FPN level ``l`` with input ``x_l: (N, C, H_l, W_l)``::

    c_l = cls_subnet(x_l)                 n x (conv3x3, GN32, ReLU)
    r_l = bbox_subnet(x_l)                n x (conv3x3, GN32, ReLU)
    logits  = cls_score(c_l)              (N, K, H, W)
    ltrb    = scales[l] · bbox_pred(r_l)  (N, 4, H, W), distances in units of the level's stride
    quality = ctrness(r_l)                (N, 1, H, W), the quality branch on the regression tower

**The ltrb parameterisation** is the ATSS paper's anchor-free ("POINT") setting, as its code
``sfzhang15/ATSS`` runs it: distances from the location to the four sides, divided by the stride,
``bbox_pred`` bias initialised to 4 so that the first boxes are the 8·stride assignment anchors, and
negative distances clipped at 0 (there in the head, here by ``Box2BoxTransformLinear.apply_deltas``,
which Detectron2's FCOS decodes with). The ATSS paper reports the point and the box (anchor-delta,
mmdet's ``ATSSHead``) forms within 0.1 AP of each other; the point form is the "FCOS+ATSS structure"
HCRAL builds on, and it keeps Detectron2's FCOS decoding and checkpoints.

Parameter names are ``FCOSHead``'s (``cls_subnet``, ``bbox_subnet``, ``cls_score``, ``bbox_pred``,
``ctrness``): a Detectron2 FCOS checkpoint loads with only ``scales`` missing.

Options: ``aux=True`` adds VarifocalNet's star-deformable refinement
(:mod:`~alignment_det.modeling.heads.vfnet_aux`; then ``bbox_pred`` predicts the initial box
``exp(scale·x)·anchor_scale`` and ``cls_score`` reads the star-DCN feature); ``dcn_on_last_conv=True``
turns the last conv of both towers into a modulated deformable conv (the DCN models' heads).
"""
from typing import List

import torch
from detectron2.modeling.meta_arch.fcos import FCOSHead
from torch import Tensor, nn

from .vfnet_aux import ModulatedDeformConv3x3, VFNetAux

__all__ = ["ATSSHead"]

# sfzhang15/ATSS, REGRESSION_TYPE "POINT": ltrb = 4 strides = the 8·stride anchor's half side.
ATSS_BBOX_INIT_BIAS = 4.0


class ATSSHead(FCOSHead):
    """``FCOSHead`` + ``scales`` (+ optional AUX / DCN), see module doc.

    Keyword arguments: ``FCOSHead``'s (``input_shape``, ``conv_dims``, ``num_classes``, ``norm``,
    ``prior_prob``) and
        aux: VFNet's star-DCN refinement (default False).
        anchor_scale: ``d_l / s_l`` of the initial box with AUX (8, VFNet's 64..1024 px).
        gradient_mul: share of the gradient the star offsets pass to the initial box (0.1).
        dcn_on_last_conv: modulated deformable conv as the last conv of both towers (default False).
    """

    def __init__(
        self,
        *,
        input_shape,
        conv_dims: List[int],
        aux: bool = False,
        anchor_scale: float = 8.0,
        gradient_mul: float = 0.1,
        dcn_on_last_conv: bool = False,
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, conv_dims=conv_dims, **kwargs)
        self.num_levels = len(input_shape)
        self.scales = nn.Parameter(torch.ones(self.num_levels))
        # AUX: exp(0)·anchor_scale (VFNet's init); plain: the ATSS point init.
        nn.init.constant_(self.bbox_pred.bias, 0.0 if aux else ATSS_BBOX_INIT_BIAS)
        self.anchor_scale = float(anchor_scale)
        if dcn_on_last_conv:
            for tower in (self.cls_subnet, self.bbox_subnet):
                last = max(i for i, m in enumerate(tower) if isinstance(m, nn.Conv2d))
                tower[last] = ModulatedDeformConv3x3.from_conv(tower[last])
        self.aux = (
            VFNetAux(channels=conv_dims[-1], num_levels=self.num_levels, norm=kwargs.get("norm", ""), gradient_mul=gradient_mul)
            if aux
            else None
        )

    def forward(self, features: List[Tensor]):
        """
        Args:
            features: per level (N, C, H_l, W_l), finest first.

        Returns:
            ``(logits, ltrb, quality)``, per-level lists of (N, K, H, W), (N, 4, H, W) and
            (N, 1, H, W); with AUX a fourth list, the initial boxes ``ltrb0`` (N, 4, H, W), and
            ``ltrb`` is then the refined box. All ltrb in strides.
        """
        if len(features) != self.num_levels:
            raise ValueError(f"ATSSHead expects {self.num_levels} levels, got {len(features)}")
        logits, ltrb, quality, ltrb_init = [], [], [], []
        for level, x in enumerate(features):
            cls_feat = self.cls_subnet(x)
            reg_feat = self.bbox_subnet(x)
            quality.append(self.ctrness(reg_feat))
            if self.aux is None:
                logits.append(self.cls_score(cls_feat))
                ltrb.append(self.bbox_pred(reg_feat) * self.scales[level])
            else:
                init = (self.bbox_pred(self.aux.reg_conv(reg_feat)) * self.scales[level]).float().exp() * self.anchor_scale
                cls_feat, refined = self.aux(level, cls_feat, reg_feat, init)
                logits.append(self.cls_score(cls_feat))
                ltrb.append(refined)
                ltrb_init.append(init)
        if self.aux is None:
            return logits, ltrb, quality
        return logits, ltrb, quality, ltrb_init
