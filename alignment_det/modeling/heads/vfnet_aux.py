"""VarifocalNet's auxiliary modules (the HCRAL paper's "AUX", docs/methods.md#atss-detector), on torchvision's
deformable convolution, which runs on CPU and CUDA alike.

Per level, from the regression-tower output ``r`` and the classification-tower output ``c``::

    ltrb0   = exp(scale_l · bbox_pred(reg_conv(r))) · anchor_scale       initial box, in strides
    offsets = star_dcn_offsets(0.9·detach(ltrb0) + 0.1·ltrb0)            9 points on the box
    ltrb1   = exp(scales_refine_l · bbox_refine(relu(reg_dcn(r, offsets)))) · detach(ltrb0)
    logits  = cls_score(relu(cls_dcn(c, offsets)))

Boxes are in units of the level's stride here (VFNet's ``exp(·)·d_l`` with ``d_l = 8·s_l`` pixels,
divided by ``s_l``), so the detector decodes every box with the same
``Box2BoxTransformLinear(normalize_by_size=True)``. ``bbox_pred``, ``cls_score`` and ``scale_l`` are
the head's own layers (:class:`~alignment_det.modeling.heads.atss_head.ATSSHead`); this module holds
the new ones.

Offset layout (torchvision ``deform_conv2d`` = mmcv): channel ``2k`` / ``2k + 1`` is the (dy, dx)
displacement of kernel point ``k``, row-major over the 3x3 grid, relative to the regular grid
position (``k // 3 - 1``, ``k % 3 - 1``). The star sampling points are the box's corners, edge
midpoints and centre, in that grid order: dy ∈ {-t, 0, +b}, dx ∈ {-l, 0, +r}.
"""
from typing import List, Optional, Tuple

import torch
from detectron2.layers import get_norm
from torch import Tensor, nn
from torchvision.ops import DeformConv2d, deform_conv2d

__all__ = ["star_dcn_offsets", "VFNetAux", "ModulatedDeformConv3x3"]

# Regular 3x3 grid positions (dy, dx) of the kernel points, row-major: VFNet's ``dcn_base_offset``.
_GRID_DY = (-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
_GRID_DX = (-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0)


def star_dcn_offsets(ltrb: Tensor, gradient_mul: float = 0.1) -> Tensor:
    """(N, 4, H, W) box distances (l, t, r, b) in feature cells -> (N, 18, H, W) star offsets.

    Only ``gradient_mul`` of the gradient reaches ``ltrb`` (VFNet: ``0.9·detach + 0.1·x``).
    """
    z = (1.0 - gradient_mul) * ltrb.detach() + gradient_mul * ltrb
    left, top, right, bottom = z.unbind(dim=1)
    zero = torch.zeros_like(left)
    dy = torch.stack([-top, -top, -top, zero, zero, zero, bottom, bottom, bottom], dim=1)  # (N, 9, H, W)
    dx = torch.stack([-left, zero, right, -left, zero, right, -left, zero, right], dim=1)
    grid_dy = dy.new_tensor(_GRID_DY).view(1, 9, 1, 1)
    grid_dx = dx.new_tensor(_GRID_DX).view(1, 9, 1, 1)
    offsets = torch.stack([dy - grid_dy, dx - grid_dx], dim=2)  # (N, 9, 2, H, W): (dy, dx) per point
    return offsets.flatten(1, 2)


def _deform_conv3x3(channels: int) -> DeformConv2d:
    conv = DeformConv2d(channels, channels, kernel_size=3, padding=1, bias=False)
    nn.init.normal_(conv.weight, std=0.01)  # mmdet normal_init of VFNet's dconvs
    return conv


class VFNetAux(nn.Module):
    """The new layers of AUX: ``reg_conv`` (conv3x3 + norm + ReLU), ``reg_dcn`` / ``cls_dcn``
    (star deformable 3x3 convs, no bias), ``bbox_refine`` (conv3x3 -> 4) and ``scales_refine``
    (one learnable scale per level)."""

    def __init__(self, *, channels: int, num_levels: int, norm: str = "GN", gradient_mul: float = 0.1):
        super().__init__()
        layers: List[nn.Module] = [nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=not norm)]
        if norm:
            layers.append(get_norm(norm, channels))
        layers.append(nn.ReLU())
        self.reg_conv = nn.Sequential(*layers)
        self.reg_dcn = _deform_conv3x3(channels)
        self.cls_dcn = _deform_conv3x3(channels)
        self.bbox_refine = nn.Conv2d(channels, 4, kernel_size=3, padding=1)
        self.scales_refine = nn.Parameter(torch.ones(num_levels))
        for conv in (self.reg_conv[0], self.bbox_refine):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.constant_(conv.bias, 0.0)
        self.gradient_mul = float(gradient_mul)

    def forward(
        self, level: int, cls_feat: Tensor, reg_feat: Tensor, ltrb0: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            level: FPN level index (for ``scales_refine``).
            cls_feat, reg_feat: (N, C, H, W) tower outputs.
            ltrb0: (N, 4, H, W) initial box in strides (= feature cells).

        Returns:
            cls feature for ``cls_score`` (N, C, H, W) and the refined box ``ltrb1`` (N, 4, H, W), in
            strides, fp32.
        """
        offsets = star_dcn_offsets(ltrb0, self.gradient_mul).to(reg_feat.dtype)
        refine = self.bbox_refine(torch.relu(self.reg_dcn(reg_feat, offsets)))
        ltrb1 = (refine * self.scales_refine[level]).float().exp() * ltrb0.detach()
        return torch.relu(self.cls_dcn(cls_feat, offsets)), ltrb1


class ModulatedDeformConv3x3(nn.Module):
    """Modulated deformable 3x3 conv (DCNv2, mmcv's ``ModulatedDeformConv2dPack``) on torchvision.

    ``weight`` / ``bias`` have the names and shapes of the ``nn.Conv2d`` it replaces, so a checkpoint
    of the plain tower loads into it with only ``conv_offset`` missing. ``conv_offset`` predicts 9
    offsets (dy, dx) and 9 mask logits; it starts at zero (mmcv), i.e. no displacement and mask 0.5.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias: Optional[nn.Parameter] = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.normal_(self.weight, std=0.01)
        self.conv_offset = nn.Conv2d(in_channels, 27, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "ModulatedDeformConv3x3":
        """Same weights as ``conv`` (a 3x3, stride 1, padding 1 conv)."""
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
            raise ValueError(f"ModulatedDeformConv3x3 replaces a 3x3 / stride 1 / padding 1 conv, got {conv}")
        m = cls(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            m.weight.copy_(conv.weight)
            if conv.bias is not None:
                m.bias.copy_(conv.bias)
        return m

    def forward(self, x: Tensor) -> Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(x), 3, dim=1)
        return deform_conv2d(
            x, torch.cat([o1, o2], dim=1), self.weight, self.bias, padding=(1, 1), mask=torch.sigmoid(mask)
        )
