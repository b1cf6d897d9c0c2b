#!/usr/bin/env python
"""Run a config with a checkpoint on images and write the detections drawn on them.

    python tools/demo.py --config-file configs/mal_R50.py --input img1.jpg dir_of_images/ \
        --output out/ --confidence 0.5 train.init_checkpoint=model_final.pth

Inputs may be image files, folders (all images inside) or glob patterns. Each result
is written to --output under the input's file name, drawn with Detectron2's Visualizer.
"""
import argparse
import glob
import os
import sys

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def expand_inputs(inputs):
    """Files, folders and globs -> sorted list of image paths; error when nothing matches."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += [os.path.join(item, f) for f in sorted(os.listdir(item)) if f.lower().endswith(IMAGE_EXTS)]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            matched = sorted(glob.glob(os.path.expanduser(item)))
            if not matched:
                raise FileNotFoundError(f"--input {item!r}: no such file, folder or glob match")
            paths += matched
    if not paths:
        raise FileNotFoundError(f"--input {inputs}: no images found ({', '.join(IMAGE_EXTS)})")
    return paths


def build_predictor(cfg, checkpoint: str):
    import torch
    from detectron2.data import transforms as T

    from alignment_det.engine import build_eval_model

    model = build_eval_model(cfg, checkpoint)
    aug = T.ResizeShortestEdge(*config_test_resize(cfg))
    input_format = cfg.model.get("input_format", "BGR")

    @torch.no_grad()
    def predict(bgr):
        image = bgr[:, :, ::-1] if input_format == "RGB" else bgr
        h, w = image.shape[:2]
        tensor = torch.as_tensor(aug.get_transform(image).apply_image(image).astype("float32").transpose(2, 0, 1))
        return model([{"image": tensor, "height": h, "width": w}])[0]

    return predict


def config_test_resize(cfg):
    """(short_edge, max_size) of the config's test mapper, Detectron2's defaults otherwise."""
    try:
        aug = cfg.dataloader.test.mapper.augmentations[0]
        return aug.short_edge_length, aug.max_size
    except (AttributeError, IndexError, KeyError):
        return 800, 1333


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--input", nargs="+", required=True, help="images, folders or globs")
    p.add_argument("--output", required=True, help="folder for the drawn images")
    p.add_argument("--confidence", type=float, default=0.5, help="minimum score to draw")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="key=value overrides, e.g. train.init_checkpoint=...")
    args = p.parse_args(argv)

    from alignment_det.utils.optional import import_optional

    cv2 = import_optional("cv2", extra="d2", package="opencv-python-headless", purpose="tools/demo.py")
    from detectron2.data import MetadataCatalog
    from detectron2.utils.visualizer import Visualizer
    from tqdm import tqdm

    from alignment_det.config import load_config

    cfg = load_config(args.config_file, args.opts)
    if not cfg.train.init_checkpoint:
        p.error("give the weights: train.init_checkpoint=PATH_OR_URL")
    paths = expand_inputs(args.input)
    predict = build_predictor(cfg, cfg.train.init_checkpoint)
    try:
        meta = MetadataCatalog.get(cfg.dataloader.test.dataset.names)
    except Exception:  # noqa: BLE001 - drawing works without class names
        meta = None
    os.makedirs(args.output, exist_ok=True)
    for path in tqdm(paths, desc="demo", unit="img"):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            tqdm.write(f"skipped {path}: not a readable image")
            continue
        instances = predict(bgr)["instances"].to("cpu")
        instances = instances[instances.scores >= args.confidence]
        vis = Visualizer(bgr[:, :, ::-1], metadata=meta).draw_instance_predictions(instances)
        cv2.imwrite(os.path.join(args.output, os.path.basename(path)), vis.get_image()[:, :, ::-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
