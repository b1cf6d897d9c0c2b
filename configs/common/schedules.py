"""LR multipliers: multi-step decay with linear warm-up, as Detectron2's schedules."""
from alignment_det.config.schedules import multistep


def coco_schedule(num_x: float, warmup_iters: int = 1000, warmup_factor: float = 0.001):
    """Detectron2's Nx COCO schedule at 16 images/batch: 90k x N iterations, decays at 2/3 and 8/9."""
    max_iter = int(90000 * num_x)
    return multistep(max_iter, [int(60000 * num_x), int(80000 * num_x)], warmup_iters, warmup_factor)


lr_multiplier_1x = coco_schedule(1)
lr_multiplier_2x = coco_schedule(2)
lr_multiplier_3x = coco_schedule(3)
