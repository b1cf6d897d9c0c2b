"""Training augmentations shared by several configs."""
from detectron2.config import LazyCall as L
from detectron2.data import transforms as T


def detr_multiscale_crop(short_edges, max_size: int):
    """DETR-style augmentation (DATE's coco_det_3x, and its CrowdHuman config): flip; with
    probability 0.5 resize the short side to 400/500/600 and crop 384-600 px at random;
    then resize the short side to one of ``short_edges`` (long side <= ``max_size``).

    The crop branch followed by the final resize is the AutoAugment policy's second branch;
    without it the final resize alone is its first branch.
    """
    return [
        L(T.RandomFlip)(horizontal=True),
        L(T.RandomApply)(
            tfm_or_aug=L(T.AugmentationList)(
                augs=[
                    L(T.ResizeShortestEdge)(short_edge_length=(400, 500, 600), max_size=max_size, sample_style="choice"),
                    L(T.RandomCrop)(crop_type="absolute_range", crop_size=(384, 600)),
                ]
            ),
            prob=0.5,
        ),
        L(T.ResizeShortestEdge)(short_edge_length=tuple(short_edges), max_size=max_size, sample_style="choice"),
    ]


def resize_flip(short_edge_length, max_size: int = 1333, sample_style: str = "choice"):
    """mmdetection's standard training pipeline: resize the short side, then flip horizontally.

    ``short_edge_length=800`` is mmdet's single scale (1333, 800); ``(480, 960)`` with
    ``sample_style="range"`` its ``multiscale_mode='range'`` between (1333, 480) and (1333, 960).
    """
    return [
        L(T.ResizeShortestEdge)(short_edge_length=short_edge_length, max_size=max_size, sample_style=sample_style),
        L(T.RandomFlip)(horizontal=True),
    ]
