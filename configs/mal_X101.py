"""MAL X101-FPN on COCO (docs/methods.md#mal-defaults): ResNeXt-101 32x8d built as Detectron2's
``build_resnet_backbone`` builds it (bottleneck width 32 x 8 = 256 doubling per stage, stride in the
3x3 conv, FAIR ImageNet weights with their pixel std), 180k iterations with decays at 120k / 160k,
bag size 50 (code value for X101) and multi-scale training, short side sampled in [640, 800]
(``DeLightCMU/MAL`` ``version_0``; the KevinKecc config uses 480-960, see docs/methods.md#mal-choices).
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.resnet import BottleneckBlock

from .common.schedules import schedule
from .common.data.augmentations import resize_flip
from .mal_R50 import dataloader, model, optimizer, train

# ResNet.make_default_stages would force bottleneck_channels = out_channels / 4 (ResNet, not ResNeXt), so
# the four stages are spelled out: (blocks, first stride, in, out, bottleneck) for res2..res5.
model.backbone.bottom_up.stages = [
    L(ResNet.make_stage)(
        block_class=BottleneckBlock,
        num_blocks=n,
        stride_per_block=[s] + [1] * (n - 1),
        in_channels=cin,
        out_channels=cout,
        bottleneck_channels=width,
        num_groups=32,
        stride_in_1x1=False,
        norm="FrozenBN",
    )
    for n, s, cin, cout, width in [
        (3, 1, 64, 256, 256),
        (4, 2, 256, 512, 512),
        (23, 2, 512, 1024, 1024),
        (3, 2, 1024, 2048, 2048),
    ]
]
# Detectron2's X-101-32x8d.pkl expects the ImageNet std (the MSRA weights absorb it: std 1).
model.pixel_std = [57.375, 57.120, 58.395]
model.anchor_bag_size = 50

dataloader.train.mapper.augmentations = resize_flip((640, 800), max_size=1333, sample_style="range")

train.init_checkpoint = "detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl"
train.output_dir = "./output/mal_X101"

lr_multiplier = schedule(train, 180000, [120000, 160000], warmup_iters=500, warmup_factor=1.0 / 3)
