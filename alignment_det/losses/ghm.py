"""GHM harmoniser: the gradient-density weight β of GHM-C (Li et al., AAAI 2019), as HCRA-C uses it.

docs/methods.md#ghm-harmoniser, mmdet ``GHMC`` semantics. For every valid element ``e`` (a (prior,
class) pair) with gradient norm ``g_e = |p_e - y_e|`` in [0, 1]:

* bin ``j(e)`` of ``M`` equal bins over [0, 1] (mmdet's edges ``i / M``, the last one moved to
  ``1 + 1e-6`` so that ``g = 1`` falls in the last bin);
* ``count_j`` = valid elements in bin ``j``; ``tot = Σ_j count_j``;
* for each bin with ``count_j > 0``: ``acc_j <- m·acc_j + (1 - m)·count_j`` (momentum ``m``, 0.75);
* ``β_e = tot / acc_{j(e)} / n`` with ``n`` the number of non-empty bins (GHM_Detection #13 /
  mmdet #1741: not ``M``); invalid elements get 0. With ``m = 0``: ``β_e = tot / count_j / n``.

Readings named here (the paper and mmdet leave them open; docs/methods.md#hcral-choices):

* **EMA seeding** ``ema_init``: ``"first"`` (default) sets a bin's ``acc_j`` to its first non-zero
  count, so the first steps are not weighted ``1 / (1 - m^t)`` more (×4 at the first step with
  m = 0.75, exactly when the network is most fragile); ``"zero"`` starts every ``acc_j`` at 0 as
  mmdet does (equal to mmdet's GHMC step for step; the unit tests check it).
* **Granularity**: one histogram per *batch* over every level and image (mmdet calls GHMC once per
  FPN level, i.e. five histograms sharing one EMA buffer). One histogram is cheaper (one
  ``bincount``) and gives each level's elements the density of the whole batch.
* **β cap** ``beta_cap``: off by default (mmdet has none). With COCO-sized heads ``tot`` is ~10^6, so
  a fixed cap such as 50 would also crush the weights of the ordinary rare-bin positives; set it
  only when very few valid elements make β explode (GHM_Detection #29).
* **DDP**: bin counts are all-reduced (mean over ranks) before the EMA, so every rank holds the same
  ``acc`` (mmdet keeps one per GPU). ``tot`` is the same mean, so β is what one process with the
  whole batch would compute.

The state (``acc``) is a persistent buffer: a checkpoint resumes it exactly. Pure tensor layer.
"""
from typing import NamedTuple, Optional

import torch

from alignment_det.utils.comm import all_reduce_mean
from alignment_det.utils.training_statistics import TrainingStatistics

__all__ = ["GHMHarmonizer", "GHMWeights", "GHM_EMA_INITS"]

GHM_EMA_INITS = ("first", "zero")


class GHMWeights(NamedTuple):
    beta: torch.Tensor  # same shape as the gradient norms, 0 at invalid elements
    num_nonempty_bins: torch.Tensor  # () int64
    tot: torch.Tensor  # () float32, valid elements (mean over ranks)


class GHMHarmonizer(TrainingStatistics):
    """Gradient-density weights with an EMA of the bin counts in a buffer (see module doc).

    Args (keyword-only):
        bins: ``M`` (20 for HCRA-C, Table 1).
        momentum: EMA momentum of the bin counts (0.75, as mmdet's GHM configs); 0 = no EMA.
        ema_init: ``"first"`` (default) or ``"zero"`` (mmdet), see module doc.
        beta_cap: upper bound on β, or None (default) for none.
        sync: all-reduce the bin counts across ranks (no-op in one process).

    Buffers: ``acc`` (M,) float32, persistent. The EMA is updated only in ``training`` mode.
    """

    def __init__(
        self,
        *,
        bins: int = 20,
        momentum: float = 0.75,
        ema_init: str = "first",
        beta_cap: Optional[float] = None,
        sync: bool = True,
    ):
        super().__init__()
        if int(bins) < 1:
            raise ValueError(f"GHMHarmonizer: bins must be >= 1, got {bins}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"GHMHarmonizer: momentum must be in [0, 1), got {momentum}")
        if ema_init not in GHM_EMA_INITS:
            raise ValueError(f"GHMHarmonizer: ema_init must be one of {GHM_EMA_INITS}, got {ema_init!r}")
        if beta_cap is not None and float(beta_cap) <= 0:
            raise ValueError(f"GHMHarmonizer: beta_cap must be > 0 or None, got {beta_cap}")
        self.bins = int(bins)
        self.momentum = float(momentum)
        self.ema_init = ema_init
        self.beta_cap = None if beta_cap is None else float(beta_cap)
        self.sync = bool(sync)
        # Interior edges i / M, i = 1..M-1: bucketize(right=True) then gives bin j exactly when
        # edges[j] <= g < edges[j + 1], mmdet's test (its last edge 1 + 1e-6 only matters for g = 1,
        # which lands in bin M - 1 here as there).
        self.register_buffer("inner_edges", torch.arange(1, self.bins, dtype=torch.float32) / self.bins, persistent=False)
        self.register_buffer("acc", torch.zeros(self.bins, dtype=torch.float32), persistent=True)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, momentum={self.momentum}, ema_init={self.ema_init!r}, beta_cap={self.beta_cap}"

    @torch.no_grad()
    def forward(self, grad_norm: torch.Tensor, valid: Optional[torch.Tensor] = None) -> GHMWeights:
        """
        Args:
            grad_norm: any shape, ``|p - y|`` in [0, 1] (detached; values outside are clamped).
            valid: bool, broadcastable to ``grad_norm``; None = all valid.

        Returns:
            :class:`GHMWeights`: ``beta`` (shape of ``grad_norm``, float32), the number of non-empty
            bins and ``tot``. Updates ``acc`` when the module is in training mode.
        """
        g = grad_norm.detach().float().clamp(0.0, 1.0)
        idx = torch.bucketize(g, self.inner_edges, right=True)
        if valid is not None:
            idx = torch.where(valid.expand_as(g), idx, torch.full_like(idx, self.bins))  # bin M = invalid
        counts = torch.bincount(idx.reshape(-1), minlength=self.bins + 1)[: self.bins].float()
        if self.sync:
            counts = all_reduce_mean(counts)
        tot = counts.sum()
        nonempty = counts > 0
        if self.momentum > 0:
            acc = self.acc
            updated = self.momentum * acc + (1.0 - self.momentum) * counts
            if self.ema_init == "first":
                updated = torch.where(acc > 0, updated, counts)
            acc = torch.where(nonempty, updated, acc)
            if self.training:
                self.acc.copy_(acc)
            density = acc
        else:
            density = counts
        n = nonempty.sum()
        per_bin = torch.where(nonempty, tot / density.clamp(min=torch.finfo(torch.float32).tiny), counts.new_zeros(()))
        per_bin = per_bin / n.clamp(min=1)
        if self.beta_cap is not None:
            per_bin = per_bin.clamp(max=self.beta_cap)
        per_bin = torch.cat([per_bin, per_bin.new_zeros(1)])  # invalid elements: 0
        return GHMWeights(per_bin[idx], n, tot)
