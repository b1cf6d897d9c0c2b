"""Training inputs for in-process forwards of the tiny instant-test models (needs Detectron2)."""
import torch
from detectron2.structures import Boxes, Instances

H, W = 128, 160


def gt_instances(boxes, classes, size=(H, W)) -> Instances:
    """Ground truth ``Instances`` from (G, 4) XYXY boxes and (G,) classes (G may be 0)."""
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long).reshape(-1)
    return inst


def random_batch(*gts, seed=0):
    """One random (3, H, W) image in [0, 255) per ground-truth ``Instances``."""
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(3, H, W, generator=g) * 255, "instances": gt} for gt in gts]
