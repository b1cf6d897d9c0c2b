#!/usr/bin/env python
"""Draw the ground truth of an image and the priors a method makes positive for each of them.

    python tools/visualize_assignment.py --config-file configs/mal_R50.py --index 3 \\
        --checkpoint output/mal_R50/model_final.pth --iteration 60000 --output mal_assignment.png

    python tools/visualize_assignment.py --config-file configs/date_F_R50_1x.py \\
        --image photo.jpg --gt 10,20,200,180,0 --output date_assignment.png

The image is the ``--index``-th of the config's test set (``--split train`` for the training set),
or a file: one of the dataset's images (its annotations are used), or any image with ``--gt
x0,y0,x1,y1,class`` boxes in its pixels. It is resized by the config's test augmentation, as the
model sees it. What is drawn comes from the model's own code: a meta-architecture's
``assignment(batched_inputs)`` (MAL: ``bag`` and ``selected`` at ``--iteration``; DATE: ``o2o``
and ``o2m``; RetinaNetConf: ``iou_matcher``; the contract is in
``alignment_det/modeling/assignment.py``), or Detectron2's ``label_anchors`` for its RetinaNet
and FCOS. Anchors are drawn as boxes, points as dots, in the colour of their ground truth; one row
per group and one panel per FPN level (``--layout overlay``: all levels in one panel per group).
Without ``--checkpoint`` the weights are random, which changes only the prediction-dependent
groups (MAL ``selected``, DATE ``o2o``). Trailing ``key=value`` pairs override the config.
"""
import argparse
import os
import sys
from typing import List

import numpy as np


def parse_gt(specs: List[str]):
    """``["x0,y0,x1,y1,cls", ...]`` -> Detectron2 annotations (XYXY_ABS)."""
    from detectron2.structures import BoxMode

    anns = []
    for spec in specs:
        try:
            x0, y0, x1, y1, c = spec.split(",")
            box = [float(x0), float(y0), float(x1), float(y1)]
            cls = int(c)
        except ValueError:
            raise ValueError(f"--gt {spec!r}: expected x0,y0,x1,y1,class (pixels, class index from 0)") from None
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"--gt {spec!r}: the box is empty (x1 <= x0 or y1 <= y0)")
        anns.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": cls, "iscrowd": 0})
    return anns


def dataset_dict_for(cfg, *, index=None, image=None, gt=(), split="test"):
    """The Detectron2 dataset dict to draw: the ``index``-th of the split, or the file ``image``."""
    import cv2
    from detectron2.data import DatasetCatalog

    names = cfg.dataloader[split].dataset.names
    names = [names] if isinstance(names, str) else list(names)
    if image is None:
        dicts = [d for n in names for d in DatasetCatalog.get(n)]
        if not 0 <= index < len(dicts):
            raise IndexError(f"--index {index}: the {split} set ({', '.join(names)}) has {len(dicts)} images")
        return dicts[index]
    if not os.path.isfile(image):
        raise FileNotFoundError(f"--image {image}: no such file")
    if not gt:  # one of the dataset's images: take its annotations
        real = os.path.realpath(image)
        for d in (d for n in names for d in DatasetCatalog.get(n)):
            if os.path.realpath(d["file_name"]) == real:
                return d
        raise ValueError(f"--image {image} is not an image of {', '.join(names)}: give its boxes with --gt x0,y0,x1,y1,class")
    img = cv2.imread(image)
    if img is None:
        raise ValueError(f"--image {image}: not a readable image")
    return {"file_name": image, "image_id": 0, "height": img.shape[0], "width": img.shape[1], "annotations": parse_gt(gt)}


def model_input(cfg, dataset_dict):
    """The training-style input (image + instances) at the test resolution: the config's test mapper
    with ``is_train=True``, so the annotations are kept and no random augmentation runs."""
    import copy

    from detectron2.config import instantiate

    mapper_cfg = copy.deepcopy(cfg.dataloader.test.mapper)
    mapper_cfg.is_train = True
    return instantiate(mapper_cfg)(copy.deepcopy(dataset_dict))


def compute_assignment(model, batched_inputs):
    """``model.assignment`` when the meta-architecture has one, else Detectron2's ``label_anchors``."""
    from detectron2.modeling.meta_arch import FCOS, RetinaNet

    from alignment_det.modeling.assignment import label_anchors_assignment

    if hasattr(model, "assignment"):
        return model.assignment(batched_inputs)
    if isinstance(model, FCOS):
        return label_anchors_assignment(model, batched_inputs, group="fcos", points=True)
    if isinstance(model, RetinaNet):
        return label_anchors_assignment(model, batched_inputs, group="iou_matcher")
    raise TypeError(
        f"{type(model).__name__} exposes no label assignment: implement assignment(batched_inputs) as "
        "alignment_det/modeling/assignment.py describes (Detectron2's RetinaNet and FCOS are drawn from label_anchors)"
    )


def _image_rgb(batched_input, input_format: str, image_size) -> np.ndarray:
    img = batched_input["image"].permute(1, 2, 0).numpy()
    if input_format == "BGR":
        img = img[:, :, ::-1]
    h, w = image_size
    return np.clip(img[:h, :w], 0, 255).astype(np.uint8)


def draw(assignment, image: np.ndarray, path: str, *, title: str, class_names=None, layout: str = "levels") -> None:
    """One row per group, one column per level with positives (``layout="overlay"``: one column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    groups = assignment.groups
    levels = sorted({int(lv) for g in groups.values() for lv in g.level_ids.tolist()})
    columns = [None] if layout == "overlay" or not levels else levels
    cmap = plt.get_cmap("tab10")
    gt_color = [cmap(i % 10) for i in range(len(assignment.gt_boxes))]
    rows = max(len(groups), 1)
    h, w = image.shape[:2]
    scale = 3.2 / max(h, w) * 1.3
    fig, axes = plt.subplots(rows, len(columns), figsize=(max(w * scale, 2.2) * len(columns) + 0.3, h * scale * rows + 0.9),
                             squeeze=False)
    for r, (gname, group) in enumerate(groups.items() or [("(no group)", None)]):
        for c, lv in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            for g, box in enumerate(assignment.gt_boxes.tolist()):
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       edgecolor=gt_color[g], lw=2.2))
                label = class_names[int(assignment.gt_classes[g])] if class_names else str(int(assignment.gt_classes[g]))
                ax.text(box[0], box[1] - 1, f"GT{g}:{label}", color="white", fontsize=6,
                        bbox=dict(facecolor=gt_color[g], alpha=0.8, pad=0.5, lw=0), va="bottom")
            n = 0
            if group is not None:
                sel = np.ones(len(group.gt_idx), dtype=bool) if lv is None else (group.level_ids.numpy() == lv)
                pri, gts = group.priors.numpy()[sel], group.gt_idx.numpy()[sel]
                n = int(sel.sum())
                for p, g in zip(pri, gts):
                    color = gt_color[int(g)] if 0 <= g < len(gt_color) else "white"
                    if len(p) == 4:
                        ax.add_patch(Rectangle((p[0], p[1]), p[2] - p[0], p[3] - p[1], fill=False, edgecolor=color,
                                               lw=0.6, alpha=0.8, ls="--"))
                        ax.plot([(p[0] + p[2]) / 2], [(p[1] + p[3]) / 2], "o", ms=2.5, color=color, mec="black", mew=0.3)
                    else:
                        ax.plot([p[0]], [p[1]], "o", ms=4, color=color, mec="black", mew=0.4)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            where = "all levels" if lv is None else assignment.level_names[lv] if lv < len(assignment.level_names) else f"level {lv}"
            ax.set_title(f"{gname} @ {where}: {n}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def summary(assignment) -> str:
    lines = []
    for name, g in assignment.groups.items():
        per_gt = np.bincount(g.gt_idx.numpy(), minlength=len(assignment.gt_boxes)) if len(g.gt_idx) else []
        lines.append(f"  {name}: {len(g.gt_idx)} positives; per GT {list(map(int, per_gt))}; "
                     f"levels {sorted(set(g.level_ids.tolist()))}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", type=int, help="index of the image in the config's dataset")
    src.add_argument("--image", help="an image file (of the dataset, or any with --gt)")
    p.add_argument("--gt", action="append", default=[], help="x0,y0,x1,y1,class of a ground truth of --image (repeat)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="dataset of --index / --image")
    p.add_argument("--checkpoint", default="", help="weights (default: random init, seed 0)")
    p.add_argument("--iteration", type=int, default=None,
                   help="training iteration for iteration-dependent assignments (MAL's m(lambda), depression)")
    p.add_argument("--layout", choices=("levels", "overlay"), default="levels")
    p.add_argument("--output", required=True, help="PNG to write")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    args = p.parse_args(argv)
    if args.gt and args.image is None:
        p.error("--gt goes with --image")

    import torch
    from detectron2.config import instantiate
    from detectron2.data import MetadataCatalog

    from alignment_det.engine import build_eval_model
    from alignment_det.config import load_config

    cfg = load_config(args.config_file, args.opts)
    import alignment_det.data  # noqa: F401  registers the built-in datasets

    record = dataset_dict_for(cfg, index=args.index, image=args.image, gt=args.gt, split=args.split)
    if args.checkpoint:
        model = build_eval_model(cfg, args.checkpoint)
    else:
        torch.manual_seed(0)
        model = instantiate(cfg.model).to(cfg.train.device).eval()
    model = getattr(model, "module", model)
    if args.iteration is not None:
        if not hasattr(model, "set_iter"):
            p.error(f"--iteration: {type(model).__name__} has no iteration-dependent assignment")
        model.set_iter(args.iteration)
    batched = [model_input(cfg, record)]
    with torch.no_grad():
        assignment = compute_assignment(model, batched)[0]
    image = _image_rgb(batched[0], cfg.model.get("input_format", "BGR"), assignment.image_size)
    try:
        class_names = MetadataCatalog.get(cfg.dataloader[args.split].dataset.names).get("thing_classes")
    except Exception:  # noqa: BLE001  (several datasets, or none): draw class indices
        class_names = None
    info = ", ".join(f"{k}={v:g}" for k, v in assignment.info.items())
    title = f"{type(model).__name__}: {os.path.basename(record['file_name'])}" + (f" ({info})" if info else "")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    draw(assignment, image, args.output, title=title, class_names=class_names, layout=args.layout)
    print(f"{title}\n{summary(assignment)}\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
