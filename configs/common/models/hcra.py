"""HCRA-C and HCRA-R at HCRAL's defaults, shared by its ATSS and RetinaNet configs: HCRA-C (M 20,
momentum 0.75, μ 0.7, θ 5, α_c 0, mirrored RCI), HCRA-R (γ 1.5, α -0.1, ep 1e-3, m 0.01; the
RetinaNet config sets γ 1.2)."""
from detectron2.config import LazyCall as L

from alignment_det.losses.hcra import HCRACLoss, HCRARLoss

hcrac = L(HCRACLoss)(
    bins=20,
    momentum=0.75,
    mu=0.7,
    theta=5.0,
    alpha=0.0,
    rci_mode="mirrored",  # docs/methods.md#hcral-choices; "literal" = Eq. 5 as printed
    use_rci=True,
    use_iou_conditioning=True,  # False: ω = 1 (a diagnostic; with use_rci=False it is GHM-C)
    ema_init="first",  # GHM EMA seeded with the first counts; "zero" = mmdet
    beta_cap=None,
    sync=True,
)
hcrar = L(HCRARLoss)(gamma=1.5, alpha=-0.1, ep=1e-3, momentum=0.01, sync=True)
