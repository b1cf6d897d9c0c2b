"""Dataset-dict builders that configs call: registration and files checked before loading,
every image (``image_check``) and malformed boxes (``box_report``) checked after, and the
result labelled with its datasets' names and class names so that the trainer can check them
against the model."""
from typing import Optional, Sequence, Union

from detectron2.data import MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.build import filter_images_with_only_crowd_annotations

from .box_report import report_malformed_boxes
from .image_check import check_images
from .register import check_datasets

__all__ = ["DatasetDicts", "get_dataset_dicts"]


class DatasetDicts(list):
    """Detectron2's list of dataset dicts, plus where it came from.

    Attributes:
        names: the registered dataset names it was loaded from.
        thing_classes: their class names (``MetadataCatalog``), or None when not registered.
    """

    def __init__(self, dicts, *, names: Sequence[str], thing_classes: Optional[Sequence[str]]):
        super().__init__(dicts)
        self.names = tuple(names)
        self.thing_classes = None if thing_classes is None else list(thing_classes)


def get_dataset_dicts(
    names: Union[str, Sequence[str]],
    *,
    strict_boxes: bool = False,
    skip_bad_images: bool = False,
    filter_empty: bool = True,
    **kwargs,
):
    """``detectron2.data.get_detection_dataset_dicts`` with checks before and after loading.

    Args:
        names: registered dataset name(s); checked first (:func:`check_datasets`).
        strict_boxes: malformed boxes (NaN, negative or zero width/height, outside the image)
            are an error instead of a warning (they are then left out); see ``box_report``.
        skip_bad_images: images that are missing or whose header does not decode are left out
            with a warning instead of being an error; see ``image_check``.
        filter_empty: drop images without non-crowd boxes, *after* malformed boxes are left out.
        kwargs: the rest of ``get_detection_dataset_dicts``'s arguments.
    Returns:
        :class:`DatasetDicts` (a list), or the registered torch Dataset as Detectron2 returns it.
    """
    names = [names] if isinstance(names, str) else list(names)
    check_datasets(names)
    dicts = get_detection_dataset_dicts(names, filter_empty=False, **kwargs)
    if not isinstance(dicts, list):
        return dicts
    dicts = check_images(dicts, dataset=",".join(names), skip_bad=skip_bad_images)
    if dicts and "annotations" in dicts[0]:
        dicts = report_malformed_boxes(dicts, dataset=",".join(names), strict=strict_boxes)
        if filter_empty:
            dicts = filter_images_with_only_crowd_annotations(dicts)
            if not dicts:
                raise ValueError(f"Dataset {','.join(names)!r} has no image with a usable (non-crowd, well-formed) box.")
    return DatasetDicts(dicts, names=names, thing_classes=MetadataCatalog.get(names[0]).get("thing_classes", None))
