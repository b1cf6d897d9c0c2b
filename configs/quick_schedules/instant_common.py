"""Shrinks a COCO config for the instant tests: ResNet-18 from scratch, 64-channel
FPN and head, the synthetic shapes dataset at ~128 px, 100 iterations on CPU."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet

from ..common.data.synthetic import NUM_CLASSES
from ..common.data.synthetic import dataloader as synthetic_dataloader
from ..common.schedules import multistep

INSTANT_MAX_ITER = 100
CHANNELS = 64


def shrink(model, dataloader, optimizer, train, *, output_dir: str, p6p7_from_c5: bool):
    """Make the dense detector ``model`` tiny and point ``dataloader`` at the synthetic set;
    returns the LR multiplier."""
    _shrink_backbone(model)
    # LastLevelP6P7 reads C5 (512 channels for R18) for RetinaNet, P5 for FCOS.
    model.backbone.top_block.in_channels = 512 if p6p7_from_c5 else CHANNELS
    model.head.input_shape = [ShapeSpec(channels=CHANNELS)] * 5
    model.head.conv_dims = [CHANNELS, CHANNELS]
    model.num_classes = NUM_CLASSES
    return _shrink_schedule(dataloader, optimizer, train, output_dir=output_dir)


def shrink_two_stage(model, dataloader, optimizer, train, *, output_dir: str):
    """``shrink`` for Faster R-CNN (``GeneralizedRCNN``): tiny RPN and box head, fewer proposals."""
    _shrink_backbone(model)
    model.proposal_generator.head.in_channels = CHANNELS
    model.proposal_generator.pre_nms_topk = (200, 100)
    model.proposal_generator.post_nms_topk = (64, 64)
    model.num_classes = NUM_CLASSES  # roi_heads.num_classes follows it
    model.roi_heads.batch_size_per_image = 64
    model.roi_heads.box_head.input_shape = ShapeSpec(channels=CHANNELS, height=7, width=7)
    model.roi_heads.box_head.fc_dims = [2 * CHANNELS]
    model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=2 * CHANNELS)
    return _shrink_schedule(dataloader, optimizer, train, output_dir=output_dir)


def _shrink_backbone(model):
    # From scratch, FrozenBN would be an identity and the random net diverges: train BN.
    model.backbone.bottom_up.stem.norm = "BN"
    model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="BN")
    model.backbone.bottom_up.freeze_at = 0
    model.backbone.out_channels = CHANNELS


def _shrink_schedule(dataloader, optimizer, train, *, output_dir: str):
    dataloader.train = synthetic_dataloader.train
    dataloader.test = synthetic_dataloader.test
    dataloader.evaluator = synthetic_dataloader.evaluator
    dataloader.reference_batch_size = synthetic_dataloader.reference_batch_size
    optimizer.lr = 0.01
    train.max_iter = INSTANT_MAX_ITER
    train.init_checkpoint = ""
    train.device = "cpu"
    train.output_dir = output_dir
    train.eval_period = 0  # evaluation is run by --eval-only on the result
    train.log_period = 5
    train.checkpointer = dict(period=50, max_to_keep=3)
    train.seed = 0
    # A from-scratch tiny net at lr 0.01 sees gradient-norm spikes (40-12000 against ~1-5
    # normally): RetinaNet's instant test hit a NaN loss at iteration 76 and MAL's bag loss
    # (normalised per ground truth, 1-4 per synthetic image) collapsed to all-zero scores.
    # Clipping the full-model norm at 10 (mmdet's FreeAnchor configs clip at 35 for R50)
    # keeps them training; a config that already clips (DATE, at 0.1) keeps its own value.
    if not train.clip_grad.enabled:
        train.clip_grad.update(enabled=True, clip_type="full_model", clip_value=10.0)
    return multistep(INSTANT_MAX_ITER, [80], warmup_iters=10, warmup_factor=0.1)
