"""HCRAL on FCOS+ATSS R101-DCN-FPN with AUX, 2x + multi-scale training (paper, test-dev: 49.3 AP).

``hcral_atss_R101_2x_ms.py`` plus (docs/methods.md#atss-detector):
* modulated deformable convs (DCNv2) in every 3x3 conv of res3-res5 (mmdet ``stage_with_dcn=(False,
  True, True, True)``): Detectron2's ``DeformBottleneckBlock``, whose operator is **CUDA only**;
* the head's AUX: VarifocalNet's star-deformable refinement of box and class (initial box x1.5,
  refined box x2.0 in HCRA-R) and a modulated deformable conv as the last conv of both towers, both
  on torchvision's ``deform_conv2d`` (CPU and CUDA).
So this config trains only on GPUs; its head alone runs anywhere.
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.resnet import BottleneckBlock, DeformBottleneckBlock

from .hcral_atss_R101_2x_ms import dataloader, lr_multiplier, model, optimizer, train

# ResNet.make_default_stages passes one block class to every stage, so the four R101 stages are
# spelled out: (blocks, first stride, in, out, deformable) for res2..res5.
model.backbone.bottom_up.stages = [
    L(ResNet.make_stage)(
        block_class=DeformBottleneckBlock if deform else BottleneckBlock,
        num_blocks=n,
        stride_per_block=[s] + [1] * (n - 1),
        in_channels=cin,
        out_channels=cout,
        bottleneck_channels=cout // 4,
        stride_in_1x1=True,  # MSRA weights
        norm="FrozenBN",
        **({"deform_modulated": True, "deform_num_groups": 1} if deform else {}),
    )
    for n, s, cin, cout, deform in [
        (3, 1, 64, 256, False),
        (4, 2, 256, 512, True),
        (23, 2, 512, 1024, True),
        (3, 2, 1024, 2048, True),
    ]
]
model.head.aux = True
model.head.dcn_on_last_conv = True
model.box_reg_init_loss_weight = 1.5
model.box_reg_loss_weight = 2.0
train.output_dir = "./output/hcral_atss_R101_dcn_aux_2x_ms"
