"""COCO 2017 detection loaders (Detectron2's builtin ``coco_2017_*``, under $DETECTRON2_DATASETS)."""
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from omegaconf import OmegaConf

from alignment_det.data import get_dataset_dicts

from .augmentations import resize_flip

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    # strict_boxes=True: malformed boxes (NaN, negative or zero size, outside the image) are an
    # error; False: they are left out with one warning (alignment_det.data.box_report).
    # skip_bad_images=True: images that are missing or whose header does not decode are left out
    # with one warning; False: they are an error before training (alignment_det.data.image_check).
    dataset=L(get_dataset_dicts)(names="coco_2017_train", strict_boxes=False, skip_bad_images=False),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=resize_flip((640, 672, 704, 736, 768, 800), max_size=1333),
        image_format="BGR",
        use_instance_mask=False,
    ),
    total_batch_size=16,
    num_workers=4,
)
# The total batch that optimizer.lr and the schedule of the configs built on this one are for
# (Detectron2's COCO baselines: 16 images). A run whose total_batch_size differs gets a warning;
# train.auto_scale_lr=True scales optimizer.lr by total_batch_size / reference_batch_size.
dataloader.reference_batch_size = 16

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_dataset_dicts)(names="coco_2017_val", filter_empty=False, strict_boxes=False, skip_bad_images=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")
