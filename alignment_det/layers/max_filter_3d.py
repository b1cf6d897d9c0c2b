"""3D Max Filtering (DeFCN 3DMF, used by DATE's o2o branch without the auxiliary loss).

docs/methods.md#date-head. For every level l of the regression-tower output ``x_l``::

    y_k   = conv3x3(x_k)                                   (one conv applied to every level)
    S_l   = stack_depth(resize(y_{l-1}), y_l, resize(y_{l+1}))   (neighbours clipped at the ends,
                                                             bilinearly resized to level l's size)
    m_l   = MaxPool3d(kernel (3, 3, 3), stride 1, padding 1)(S_l)[slice of level l]
    z_l   = ReLU(GN(m_l + x_l))                              (pre-conv feature added back)
    f_l   = conv3x3(z_l) -> 1 channel                        (filter logit)

The o2o probability becomes ``σ(cls)·σ(f)`` (see :func:`fuse_filter_logits`). As in the DeFCN/DATE
code, the 3x3 conv, the GroupNorm and the filter conv are shared by all levels (convs with bias,
initialised N(0, 0.01), bias 0).
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["max_filter_3d", "MaxFiltering3D", "fuse_filter_logits"]


def max_filter_3d(features: Sequence[torch.Tensor], kernel_size: int = 3, tau: int = 2) -> List[torch.Tensor]:
    """Max over a (tau+1) x k x k window spanning neighbouring pyramid levels.

    Args:
        features: per level (N, C, H_l, W_l), finest first.
        kernel_size: spatial window (3); tau: depth window minus one (2 -> levels l-1..l+1).

    Returns:
        per level (N, C, H_l, W_l): at each position the max over the spatial window of level l and of
        its neighbours (bilinearly resized to level l's size, ``align_corners=False``). Out-of-range
        levels/positions are padding (-inf), so end levels see two slices.
    """
    margin = tau // 2
    out = []
    L = len(features)
    for lvl, x in enumerate(features):  # loop over levels
        size = x.shape[-2:]
        stack = []
        for k in range(max(0, lvl - margin), min(L, lvl + margin + 1)):
            f = features[k]
            if k != lvl and f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            stack.append(f)
        pooled = F.max_pool3d(  # = nn.MaxPool3d(kernel (tau+1, k, k), stride 1, padding (margin, k//2, k//2))
            torch.stack(stack, dim=2),  # (N, C, D, H, W)
            kernel_size=(tau + 1, kernel_size, kernel_size),
            stride=1,
            padding=(margin, kernel_size // 2, kernel_size // 2),
        )
        out.append(pooled[:, :, min(lvl, margin)])
    return out


def fuse_filter_logits(cls_logits: torch.Tensor, filter_logits: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Logit of ``σ(cls)·σ(f)`` (broadcast), as the DATE code's ``inverse_sigmoid(c.sigmoid()*f.sigmoid())``.

    ``p`` is clamped to ``[eps, 1 - eps]`` before ``log(p / (1 - p))`` (mmdet ``inverse_sigmoid``).
    """
    p = torch.sigmoid(cls_logits) * torch.sigmoid(filter_logits)
    return torch.log(p.clamp(min=eps) / (1 - p).clamp(min=eps))


class MaxFiltering3D(nn.Module):
    """3DMF block plus its filter-logit head; input the regression-tower features of all levels."""

    def __init__(
        self,
        *,
        in_channels: int = 256,
        num_levels: int = 5,
        kernel_size: int = 3,
        tau: int = 2,
        norm_groups: int = 32,
    ):
        """
        Args:
            in_channels: channels of the tower output (256).
            num_levels: number of pyramid levels the forward expects (5: P3-P7).
            kernel_size: spatial max window (3); tau: depth window - 1 (2 -> 3 levels).
            norm_groups: GroupNorm groups (32); must divide ``in_channels``.
        """
        super().__init__()
        if in_channels % norm_groups != 0:
            raise ValueError(
                f"MaxFiltering3D: norm_groups={norm_groups} must divide in_channels={in_channels}; "
                f"pick e.g. norm_groups=8 for small test models"
            )
        self.num_levels = num_levels
        self.kernel_size = kernel_size
        self.tau = tau
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)
        self.norm = nn.GroupNorm(norm_groups, in_channels)
        self.filter = nn.Conv2d(in_channels, 1, kernel_size=3, stride=1, padding=1)
        for conv in (self.conv, self.filter):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, 0.0)

    def filtered_features(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Per level (N, C, H_l, W_l) -> ``ReLU(GN(max3d(conv(x))_l + x_l))``, same shapes."""
        if len(features) != self.num_levels:
            raise ValueError(f"MaxFiltering3D expects {self.num_levels} levels, got {len(features)}")
        convolved = [self.conv(x) for x in features]
        pooled = max_filter_3d(convolved, self.kernel_size, self.tau)
        return [F.relu(self.norm(m + x)) for m, x in zip(pooled, features)]

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Per level (N, C, H_l, W_l) regression-tower output -> per level (N, 1, H_l, W_l) filter logits."""
        return [self.filter(z) for z in self.filtered_features(features)]
