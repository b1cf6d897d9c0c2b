"""DATE head: shared towers, a one-to-one (o2o) and a one-to-many (o2m) predictor, optional 3DMF.

docs/methods.md#date-head. For every FPN level ``l`` (stride ``s_l``) with input ``x_l: (N, C, H_l, W_l)``::

    c_l = cls_subnet(x_l)              4 x (conv3x3, GN32, ReLU), shared by both branches
    r_l = bbox_subnet(x_l)             4 x (conv3x3, GN32, ReLU), shared by both branches
    o2o:  cls_score(c_l) -> K,  relu(scale_l * bbox_pred(r_l)) -> 4   (ltrb in strides)
          [3DMF] filter logit f_l = max_filter(r_*)_l -> 1            (o2o prob = σ(cls)·σ(f))
    o2m FCOS:      o2m_cls_score(c_l) -> K, exp(scale_l * o2m_bbox_pred(r_l)) -> 4 (ltrb in pixels),
                   o2m_ctrness(c_l) -> 1                              (centerness on the cls tower)
                   [controls, not DATE: o2m_norm_on_bbox: relu(scale_l * o2m_bbox_pred(r_l)) (ltrb in
                   strides); o2m_centerness_on_reg: o2m_ctrness(r_l); mmdet FCOSHead's two switches]
    o2m RetinaNet: o2m_cls_score(c_l) -> A·K, scale_l * o2m_bbox_pred(r_l) -> A·4 (deltas)

``scale_l`` is one learnable scalar per level, shared by every predictor (the DATE code passes the same
``Scale`` modules to each branch). With ``share_subnets=False`` (Table 9, "not sharing") the o2m
branch gets its own towers ``o2m_cls_subnet`` / ``o2m_bbox_subnet``; the scales stay shared unless
``share_scales=False`` (a control, not DATE) gives the o2m predictor its own ``o2m_scales``. A
second control, ``o2o_detach_features=True`` (with separate towers), feeds the o2o towers the FPN
features detached in training, so that only the o2m branch trains the backbone and FPN.

In ``eval()`` only the towers and the o2o predictor (+3DMF) run: :meth:`DATEHead.forward_o2m` is
called in training only, so an inference / exported graph never contains the o2m predictors.

Parameter names follow Detectron2's ``FCOSHead`` where a layer has the same role (``cls_subnet``,
``bbox_subnet``, ``cls_score``, ``bbox_pred``), so an FCOS checkpoint initialises the towers and the
o2o predictor; see docs/design.md#date-from-an-fcos-checkpoint for the key list.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec, get_norm
from torch import Tensor, nn

from alignment_det.layers.max_filter_3d import MaxFiltering3D

__all__ = ["DATEHead"]

O2M_STYLES = ("fcos", "retinanet")


def _tower(in_channels: int, conv_dims: List[int], norm: str) -> nn.Sequential:
    """(conv3x3, norm, ReLU) x len(conv_dims); convs without bias when normalised (mmdet ConvModule
    ``bias='auto'``, docs/methods.md#date-head "no bias")."""
    layers: List[nn.Module] = []
    for cin, cout in zip([in_channels] + list(conv_dims), conv_dims):
        layers.append(nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=not norm))
        if norm:
            layers.append(get_norm(norm, cout))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _conv3x3(cin: int, cout: int, *, bias_value: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)
    nn.init.normal_(conv.weight, mean=0.0, std=0.01)
    nn.init.constant_(conv.bias, bias_value)
    return conv


class DATEHead(nn.Module):
    """Shared towers + o2o predictor + (training only) o2m predictor, optional 3DMF on the o2o branch."""

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        conv_dims: List[int],
        norm: str = "GN",
        prior_prob: float = 0.01,
        o2m: str = "fcos",
        num_anchors: int = 9,
        share_subnets: bool = True,
        share_scales: bool = True,
        o2o_detach_features: bool = False,
        use_3dmf: bool = False,
        mf_kernel_size: int = 3,
        mf_tau: int = 2,
        mf_norm_groups: int = 32,
        o2m_norm_on_bbox: bool = False,
        o2m_centerness_on_reg: bool = False,
    ):
        """
        Args:
            input_shape: one ShapeSpec per FPN level (only ``channels`` is read; all equal).
            num_classes: K.
            conv_dims: output channels of each tower conv (4 x 256 in DATE).
            norm: tower normalisation for :func:`detectron2.layers.get_norm` ("GN": 32 groups; "" for none).
            prior_prob: initial foreground probability of every classification predictor (0.01).
            o2m: "fcos" (DATE-F) or "retinanet" (DATE-R).
            num_anchors: anchors per location of the RetinaNet-style o2m branch (9); unused for "fcos".
            share_subnets: True = one pair of towers for both branches (DATE default); False = the o2m
                branch has its own towers (docs/methods.md#date-head "not sharing subnets").
            share_scales: True = one learnable scale per level for both branches (DATE code); False =
                the o2m predictor has its own ``o2m_scales`` (a control: with ``share_subnets=False``
                the backbone/FPN are then all that the two branches share).
            o2o_detach_features: False = both branches train the backbone and FPN (DATE); True = the
                o2o towers read the features detached, so the o2o loss stops at the head (a control;
                needs ``share_subnets=False``, else the o2m branch would read the same towers).
            use_3dmf: add DeFCN's 3D max filtering to the o2o branch (no auxiliary loss).
            mf_kernel_size, mf_tau, mf_norm_groups: :class:`MaxFiltering3D` settings (3, 2, 32).
            o2m_norm_on_bbox, o2m_centerness_on_reg: mmdet ``FCOSHead``'s ``norm_on_bbox`` (the FCOS
                o2m ltrb is ``relu(scale_l · x)`` in strides, which the meta-arch scales to pixels,
                instead of ``exp(scale_l · x)`` in pixels) and ``centerness_on_reg`` (centerness from
                the reg tower, as Detectron2's FCOS). Both False in DATE; controls, FCOS o2m only.
        """
        super().__init__()
        if o2m not in O2M_STYLES:
            raise ValueError(f"DATEHead: o2m must be one of {O2M_STYLES}, got {o2m!r}")
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"DATEHead: every level must have the same channels, got {sorted(channels)}")
        in_channels = channels.pop()
        self.num_levels = len(input_shape)
        self.num_classes = num_classes
        self.o2m = o2m
        self.num_anchors = num_anchors if o2m == "retinanet" else 1
        self.share_subnets = share_subnets
        if o2o_detach_features and share_subnets:
            raise ValueError("DATEHead: o2o_detach_features needs share_subnets=False (separate o2m towers)")
        self.o2o_detach_features = bool(o2o_detach_features)
        if (o2m_norm_on_bbox or o2m_centerness_on_reg) and o2m != "fcos":
            raise ValueError("DATEHead: o2m_norm_on_bbox and o2m_centerness_on_reg apply to the FCOS o2m branch")
        self.o2m_norm_on_bbox = bool(o2m_norm_on_bbox)
        self.o2m_centerness_on_reg = bool(o2m_centerness_on_reg)
        c = conv_dims[-1]
        bias_cls = -math.log((1 - prior_prob) / prior_prob)

        self.cls_subnet = _tower(in_channels, conv_dims, norm)
        self.bbox_subnet = _tower(in_channels, conv_dims, norm)
        if not share_subnets:
            self.o2m_cls_subnet = _tower(in_channels, conv_dims, norm)
            self.o2m_bbox_subnet = _tower(in_channels, conv_dims, norm)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0)

        # One learnable scale per level, shared by all predictors (mmdet ``Scale(1.0)``); the o2m
        # predictor's own only with ``share_scales=False``, so DATE's state_dict keys stay the same.
        self.scales = nn.Parameter(torch.ones(self.num_levels))
        self.share_scales = share_scales
        if not share_scales:
            self.o2m_scales = nn.Parameter(torch.ones(self.num_levels))

        # o2o predictor (the only one used at inference).
        self.cls_score = _conv3x3(c, num_classes, bias_value=bias_cls)
        self.bbox_pred = _conv3x3(c, 4)
        self.max_filter: Optional[MaxFiltering3D] = (
            MaxFiltering3D(
                in_channels=c,
                num_levels=self.num_levels,
                kernel_size=mf_kernel_size,
                tau=mf_tau,
                norm_groups=mf_norm_groups,
            )
            if use_3dmf
            else None
        )

        # o2m predictor (training only).
        A = self.num_anchors
        self.o2m_cls_score = _conv3x3(c, A * num_classes, bias_value=bias_cls)
        self.o2m_bbox_pred = _conv3x3(c, A * 4)
        self.o2m_ctrness: Optional[nn.Conv2d] = _conv3x3(c, 1) if o2m == "fcos" else None

    # ------------------------------------------------------------------ pieces
    def forward_towers(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per level (N, C, H, W) -> shared cls-tower and reg-tower outputs, each per level (N, C', H, W)."""
        if len(features) != self.num_levels:
            raise ValueError(f"DATEHead expects {self.num_levels} levels, got {len(features)}")
        return [self.cls_subnet(x) for x in features], [self.bbox_subnet(x) for x in features]

    def forward_o2o(
        self, cls_feats: List[Tensor], reg_feats: List[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor], Optional[List[Tensor]]]:
        """o2o predictor on the tower outputs.

        Returns per level: class logits (N, K, H, W); ltrb (N, 4, H, W) in units of the level's
        stride, ``relu(scale_l · x)`` (the meta-arch multiplies by ``s_l``); and with 3DMF the filter
        logits (N, 1, H, W), else None.
        """
        logits = [self.cls_score(x) for x in cls_feats]
        ltrb = [F.relu(self.bbox_pred(x) * self.scales[l]) for l, x in enumerate(reg_feats)]
        filters = self.max_filter(reg_feats) if self.max_filter is not None else None
        return logits, ltrb, filters

    def forward_o2m(
        self, features: List[Tensor], cls_feats: List[Tensor], reg_feats: List[Tensor]
    ) -> Dict[str, List[Tensor]]:
        """o2m predictor (training; at test time only for DATE's ``test_branch="o2m"`` diagnostic).

        Returns per level: ``o2m_cls`` (N, A·K, H, W) logits; ``o2m_reg`` (N, A·4, H, W): FCOS
        ltrb in pixels ``exp(scale_l · x)`` (mmdet ``norm_on_bbox=False``; with ``o2m_norm_on_bbox``
        ``relu(scale_l · x)`` in strides), or RetinaNet deltas ``scale_l · x``; FCOS also ``o2m_ctr``
        (N, 1, H, W) centerness logits from the cls tower (the reg tower with ``o2m_centerness_on_reg``).
        """
        if not self.share_subnets:
            cls_feats = [self.o2m_cls_subnet(x) for x in features]
            reg_feats = [self.o2m_bbox_subnet(x) for x in features]
        scales = self.scales if self.share_scales else self.o2m_scales
        out = {"o2m_cls": [self.o2m_cls_score(x) for x in cls_feats]}
        if self.o2m == "fcos":
            if self.o2m_norm_on_bbox:
                out["o2m_reg"] = [F.relu(self.o2m_bbox_pred(x) * scales[l]) for l, x in enumerate(reg_feats)]
            else:  # exp in fp32: a large logit would overflow in fp16 under AMP.
                out["o2m_reg"] = [
                    (self.o2m_bbox_pred(x) * scales[l]).float().exp() for l, x in enumerate(reg_feats)
                ]
            ctr_feats = reg_feats if self.o2m_centerness_on_reg else cls_feats
            out["o2m_ctr"] = [self.o2m_ctrness(x) for x in ctr_feats]
        else:
            out["o2m_reg"] = [self.o2m_bbox_pred(x) * scales[l] for l, x in enumerate(reg_feats)]
        return out

    # ------------------------------------------------------------------ forward
    def forward(self, features: List[Tensor]) -> Dict[str, Optional[List[Tensor]]]:
        """
        Args:
            features: per level (N, C, H_l, W_l), finest first.

        Returns:
            dict of per-level lists: ``o2o_cls``, ``o2o_reg``, ``o2o_filter`` (None without 3DMF) and,
            in training only, ``o2m_cls``, ``o2m_reg`` (+ ``o2m_ctr`` for FCOS); see
            :meth:`forward_o2o` and :meth:`forward_o2m` for shapes.
        """
        o2o_inputs = [x.detach() for x in features] if self.o2o_detach_features else features
        cls_feats, reg_feats = self.forward_towers(o2o_inputs)
        o2o_cls, o2o_reg, o2o_filter = self.forward_o2o(cls_feats, reg_feats)
        out: Dict[str, Optional[List[Tensor]]] = {"o2o_cls": o2o_cls, "o2o_reg": o2o_reg, "o2o_filter": o2o_filter}
        if self.training:  # the o2m branch exists for training only (docs/methods.md#date-inference)
            out.update(self.forward_o2m(features, cls_feats, reg_feats))
        return out
