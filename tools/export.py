#!/usr/bin/env python
"""Export a model to ONNX, TorchScript or torch.export, then check the exported graph against eager.

    python tools/export.py --config-file configs/date_F_R50_1x.py --checkpoint model_final.pth \
        --format onnx --output out/date.onnx [--sample-image photo.jpg] [key=value ...]

The weights come from ``--checkpoint`` or a ``train.init_checkpoint=`` override, loaded strictly (every
parameter must be in the checkpoint). The sample image (``--sample-image``, else the first image of the
built-in synthetic validation set) is resized as the config's test loader does; the graph is traced
or exported at that size (export at your deployment size). After writing ``--output``, the file is
loaded back and run on the sample and on a blank image of the same size (every pixel the pixel mean,
where a detector usually finds no candidate), with onnxruntime for ONNX; the largest difference of
its detections to the eager model's is printed for each, and above ``--tolerance`` the tool fails.

Every export has the same interface (ONNX names in brackets):

    images [images] (1, 3, H, W) raw pixels in the config's input_format
      -> boxes [boxes] (1, D, 4) XYXY, scores [scores] (1, D), classes [classes] (1, D) int64

with D the detections-per-image limit and rows past an image's detections padding (box 0, score 0,
class -1): ``classes >= 0`` selects the detections. How each model is exported:

* DATE (no NMS): the one graph of ``alignment_det.modeling.meta_arch.date_export`` (``DATEExport``),
  without the training-only o2m branch. The sample is padded to the backbone's size divisibility with
  the pixel mean (what the eager model's zero padding after normalisation amounts to). Every format.
* NMS-based detectors (RetinaNet, FCOS, ATSS, MAL, RetinaNet-Conf, HCRAL, ALWA-wrapped, Faster R-CNN):
  ``alignment_det.modeling.nms_export.NMSDetectorExport`` around the model's inference (dense
  detectors: ``model([{"image": x}])``; ``GeneralizedRCNN``: ``model.inference(...,
  do_postprocess=False)``, as Detectron2's ``tools/deploy/export_model.py``), traced for TorchScript
  and ONNX (the TorchScript-based ``torch.onnx.export``, NMS as ONNX ``NonMaxSuppression``). The
  per-level top-k count is traced as min(k, candidates), so an image without candidates gives only
  padding. ``torch_export`` is attempted, and fails on Detectron2's data-dependent post-processing
  with a message saying so. Loading such a TorchScript file needs ``import torchvision`` first (it
  registers the ``torchvision::nms`` op the graph calls).

A layer or op that does not export (Detectron2's deformable convolutions, an op without an ONNX
symbolic or onnxruntime kernel, data-dependent shapes under torch.export) ends the tool with a message
that names the op and the format, not a stack trace. ``--format onnx`` needs ``onnx`` and
``onnxruntime`` (``pip install -e ".[export]"``).

Detections are compared as sets (same class; box coordinates and score): backends may order
near-tied scores differently. The difference is absolute for values up to 1 (scores) and relative
above (box coordinates in pixels, where float32 itself has ~1e-4 px resolution at 1000 px). On the
blank image, where all locations score alike, a mismatch among tied scores is a warning, not a failure.
"""
import argparse
import os
import re
import sys
from typing import Callable, Dict, NamedTuple, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FORMATS = ("onnx", "torchscript", "torch_export")
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
# Detectron2 layers that no exporter can capture: they call the extension ``detectron2._C`` through a
# Python autograd.Function, not a registered torch op, so tracing records nothing (or a constant).
UNSUPPORTED_LAYERS: Dict[str, Tuple[str, ...]] = {
    "DeformConv": FORMATS,
    "ModulatedDeformConv": FORMATS,
}


class ExportError(RuntimeError):
    """An export that cannot be done, or whose graph does not match eager; printed without a traceback."""


# ----------------------------------------------------------------------------------- checks
def check_exportable(model, fmt: str) -> None:
    """Raise :class:`ExportError` naming the first layer of ``model`` that ``fmt`` cannot export."""
    for name, module in model.named_modules():
        formats = UNSUPPORTED_LAYERS.get(type(module).__name__)
        if formats and fmt in formats:
            raise ExportError(
                f"{fmt}: layer {name!r} is a {type(module).__name__} (Detectron2 deformable convolution), "
                f"which {fmt} cannot export: it runs a compiled Detectron2 kernel that tracing and "
                "torch.export do not see. Replace it by a plain convolution to export this model."
            )
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxruntime") if not _importable(m)]
        if missing:
            raise ExportError(
                f"onnx: {' and '.join(missing)} not installed; install the export extra: pip install -e \".[export]\""
            )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# What the exporters and onnxruntime say when an op is not supported -> the op's name.
_OP_PATTERNS = (
    (re.compile(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version (\d+) is not supported"), "op {0} (ONNX opset {1})"),
    (re.compile(r"Could not find an implementation for (\w+)\((\d+)\)"), "op {0} (onnxruntime has no kernel for version {1})"),
    (re.compile(r"[Uu]nsupported (?:ONNX )?op(?:erator)?[:\s]+'?([\w:.]+)"), "op {0}"),
    (re.compile(r"data-dependent expression (.+?) \(unhinted.*?Caused by: \(([^)]*)\)", re.S), "data-dependent shape {0} at {1}"),
)


def error_summary(error: BaseException) -> str:
    """The line of an exception's message that says what failed: the first, except for the TorchScript
    interpreter, whose message starts with a banner and a serialized traceback and ends with the error."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return re.sub(r"^\w+Error: ", "", lines[-1])  # the type is printed beside the summary
    return lines[0]


def explain_failure(fmt: str, error: BaseException, model_name: str) -> ExportError:
    """An :class:`ExportError` that names the failing op and the format, from an exporter's exception."""
    text = str(error)
    what = None
    for pattern, template in _OP_PATTERNS:
        m = pattern.search(text)
        if m:
            what = template.format(*m.groups())
            break
    hint = ""
    if fmt == "torch_export" and (what or "").startswith("data-dependent"):
        hint = (
            " Detectron2's score threshold / top-k / NMS post-processing has output sizes that depend on the"
            " data, which torch.export cannot specialise; export this model with --format torchscript or"
            " --format onnx (tracing, as Detectron2's export_model.py does)."
        )
    elif fmt == "onnx":
        hint = " Try --format torchscript, or a newer --opset."
    return ExportError(f"{fmt}: export of {model_name} failed: {what or error_summary(error)} [{type(error).__name__}].{hint}")


# ------------------------------------------------------------------------------ the graph
def load_sample_image(cfg, path: Optional[str]):
    """(3, H, W) float32 tensor in the model's ``input_format``, resized like the config's test loader."""
    import torch
    from detectron2.data import detection_utils
    from detectron2.data import transforms as T

    from demo import config_test_resize

    if path is None:
        from detectron2.data import DatasetCatalog

        import alignment_det.data  # noqa: F401  registers the synthetic set

        path = DatasetCatalog.get("synthetic_shapes_val")[0]["file_name"]
    elif not os.path.isfile(path):
        raise ExportError(f"--sample-image {path!r}: no such file")
    image = detection_utils.read_image(path, format=cfg.model.get("input_format", "BGR"))
    image = T.ResizeShortestEdge(*config_test_resize(cfg)).get_transform(image).apply_image(image)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1).copy())


def pad_to_divisibility(model, image):
    """Pad (3, H, W) raw pixels on the bottom/right to the backbone's size divisibility with the pixel
    mean, so that after normalisation the padding is 0, as in the eager model's ``ImageList``."""
    import torch.nn.functional as F

    d = max(int(getattr(model.backbone, "size_divisibility", 1) or 1), 1)
    h, w = image.shape[-2:]
    ph, pw = (-h) % d, (-w) % d
    if ph == 0 and pw == 0:
        return image
    mean = model.pixel_mean.to(image.device).reshape(-1, 1, 1)
    return F.pad(image - mean, (0, pw, 0, ph)) + mean


def blank_like(model, images):
    """A blank image batch shaped as ``images``: every pixel the model's pixel mean (a plain grey, 0
    after normalisation), where a detector usually finds no candidate above its score threshold."""
    return model.pixel_mean.to(images.device).reshape(1, -1, 1, 1).expand_as(images).clone()


class ExportSpec:
    """What to export for ``model``: ``module`` maps ``images`` (1, 3, H, W) raw pixels to boxes
    (1, D, 4), scores (1, D), classes (1, D), padding rows class -1 (the same graph interface for
    DATE and the NMS-based detectors); ``images`` is the example it is traced on."""

    input_names = ["images"]
    output_names = ["boxes", "scores", "classes"]

    def __init__(self, module, images):
        self.module, self.images = module, images


def padded_detections(outputs) -> Dict:
    """The detections of the first image of an :class:`ExportSpec` module's outputs (eager or
    exported): dict of ``boxes`` (D, 4), ``scores`` (D,), ``classes`` (D,) without the padding rows."""
    import torch

    boxes, scores, classes = (torch.as_tensor(outputs[i])[0] for i in range(3))
    valid = classes >= 0
    return {"boxes": boxes[valid], "scores": scores[valid], "classes": classes[valid]}


def export_spec(model, image) -> ExportSpec:
    """:class:`ExportSpec` for an eval-mode ``model`` and a (3, H, W) sample image."""
    from alignment_det.modeling.meta_arch.date import DATE
    from alignment_det.modeling.meta_arch.date_export import DATEExport
    from alignment_det.modeling.nms_export import NMSDetectorExport

    if isinstance(model, DATE):  # no padding inside DATE's graph: pad the example as ImageList would
        return ExportSpec(DATEExport(model).eval(), pad_to_divisibility(model, image)[None])
    try:
        return ExportSpec(NMSDetectorExport(model).eval(), image[None])
    except ValueError as e:
        raise ExportError(str(e)) from e


def export_graph(spec: ExportSpec, fmt: str, path: str, *, opset: int = DEFAULT_OPSET) -> Callable:
    """Write ``spec.module`` to ``path`` in ``fmt``; returns a function running the file that was
    written (loaded back) on an images tensor shaped as ``spec.images``, giving a tuple of tensors."""
    import torch

    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.trace(spec.module, (spec.images,), check_trace=False).save(path)
            loaded = torch.jit.load(path)
            return lambda images: tuple(loaded(images))
        if fmt == "torch_export":
            torch.export.save(torch.export.export(spec.module, (spec.images,)), path)
            program = torch.export.load(path).module()
            return lambda images: tuple(program(images))
        if fmt == "onnx":
            # The TorchScript-based exporter, as Detectron2's export code uses (torch's dynamo-based
            # exporter needs onnxscript and has no translation of torchvision's nms).
            torch.onnx.export(
                spec.module, (spec.images,), path, dynamo=False, opset_version=opset,
                input_names=spec.input_names, output_names=spec.output_names,
            )
            import onnxruntime as ort

            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            return lambda images: tuple(torch.from_numpy(o) for o in session.run(None, {name: images.cpu().numpy()}))
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


# ------------------------------------------------------------------------------ comparison
def detection_difference(eager: Dict, exported: Dict) -> float:
    """Largest difference between two sets of detections of one image.

    Each detection is a row (x0, y0, x1, y1, score) with a class. Rows are matched as sets (each row
    to its closest row of the same class in the other set, both ways), and the difference of two
    values is ``|a - b| / max(1, |b|)``: absolute for scores, relative for pixel coordinates > 1.
    Different counts, or a row without a same-class counterpart, give ``inf``.
    """
    import torch

    a = torch.cat([eager["boxes"].float().reshape(-1, 4), eager["scores"].float().reshape(-1, 1)], 1).cpu()
    b = torch.cat([exported["boxes"].float().reshape(-1, 4), exported["scores"].float().reshape(-1, 1)], 1).cpu()
    if a.shape[0] != b.shape[0]:
        return float("inf")
    if a.shape[0] == 0:
        return 0.0
    diff = ((a[:, None, :] - b[None, :, :]).abs() / a[:, None, :].abs().clamp(min=1.0)).amax(-1)  # (D, D)
    same_class = eager["classes"].cpu().reshape(-1, 1) == exported["classes"].cpu().reshape(1, -1)
    diff = torch.where(same_class, diff, torch.full_like(diff, float("inf")))
    return float(torch.maximum(diff.min(1).values.max(), diff.min(0).values.max()))


class ImageCheck(NamedTuple):
    """The exported file against eager on one image: eager's number of detections, the largest
    difference (:func:`detection_difference`), and a warning when a mismatch was let through."""

    detections: int
    difference: float
    warning: str = ""


class ExportCheck(NamedTuple):
    sample: ImageCheck
    blank: ImageCheck
    input_size: Tuple[int, int]  # (H, W) the graph was traced at


def compare_detections(fmt: str, where: str, eager: Dict, exported: Dict, tolerance: float, *, allow_ties: bool = False) -> ImageCheck:
    """:class:`ImageCheck` of ``exported`` against ``eager`` on one image; :class:`ExportError` when
    the counts differ or a value differs by more than ``tolerance``.

    With ``allow_ties``, a mismatch where eager's scores tie is a warning instead: on a uniform image
    every location scores the same, and which of the tied boxes NMS keeps is not defined (torchvision's
    batched NMS takes another code path when traced), so only ties make the detections differ there.
    """
    n_eager, n_exported = len(eager["scores"]), len(exported["scores"])
    diff = detection_difference(eager, exported)
    if diff <= tolerance:
        return ImageCheck(n_eager, diff)
    if n_eager != n_exported:
        problem = f"the exported graph gives {n_exported} detections on {where}, eager {n_eager}"
    else:
        problem = (
            f"exported detections on {where} differ from eager by {diff:.3g} (tolerance {tolerance:g}; "
            "absolute for scores, relative for box coordinates)"
        )
    if allow_ties and eager["scores"].unique().numel() < n_eager:
        return ImageCheck(n_eager, diff, f"{problem}; eager's scores tie there, and NMS may keep any of tied boxes")
    raise ExportError(f"{fmt}: {problem}")


def export_and_check(
    model, image, fmt: str, path: str, *, opset: int = DEFAULT_OPSET, tolerance: float = DEFAULT_TOLERANCE
) -> ExportCheck:
    """Export the eval-mode ``model`` at ``image``'s size to ``path``, run the file on ``image`` and on
    a blank image of the same size (:func:`blank_like`), and compare each with the eager model.

    Raises :class:`ExportError` when a layer or op does not export, the file fails on either image,
    or its detections differ from eager's by more than ``tolerance``.
    """
    import torch

    model_name = type(model).__name__
    check_exportable(model, fmt)
    spec = export_spec(model, image)
    blank = blank_like(model, spec.images)
    with torch.no_grad():
        eager = padded_detections(spec.module(spec.images))
        eager_blank = padded_detections(spec.module(blank))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        run_exported = export_graph(spec, fmt, path, opset=opset)
        with torch.no_grad():
            exported = padded_detections(run_exported(spec.images))
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - any exporter / runtime failure becomes one clear message
        raise explain_failure(fmt, e, model_name) from e
    sample_check = compare_detections(fmt, "the sample", eager, exported, tolerance)
    try:
        with torch.no_grad():
            exported_blank = padded_detections(run_exported(blank))
    except Exception as e:  # noqa: BLE001 - the file works on the sample only: say so, not a stack trace
        raise ExportError(
            f"{fmt}: the exported {model_name} runs on the sample but fails on a blank image (every pixel the "
            f"pixel mean), where the eager model gives {len(eager_blank['scores'])} detections: {error_summary(e)} "
            f"[{type(e).__name__}]. Typically a size in the post-processing (a top-k count) was frozen at the "
            "sample's value when traced; compute it from tensors (e.g. torch.clamp of the traced count) so it follows the image."
        ) from e
    blank_check = compare_detections(fmt, "a blank image", eager_blank, exported_blank, tolerance, allow_ties=True)
    return ExportCheck(sample_check, blank_check, tuple(spec.images.shape[-2:]))


# ----------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--checkpoint", default=None, help="weights (default: train.init_checkpoint)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", required=True, help="file to write (.onnx, .ts, .pt2)")
    p.add_argument("--sample-image", default=None, help="image to trace and check on (default: a synthetic-set image)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    args = p.parse_args(argv)

    from alignment_det.engine import build_eval_model
    from alignment_det.config import load_config

    cfg = load_config(args.config_file, args.opts)
    checkpoint = args.checkpoint or cfg.train.init_checkpoint
    if not checkpoint:
        p.error("give the weights: --checkpoint PATH or train.init_checkpoint=PATH")
    cfg.train.device = args.device
    try:
        model = build_eval_model(cfg, checkpoint)
        model = getattr(model, "module", model)  # never DDP here, but be safe
        image = load_sample_image(cfg, args.sample_image).to(args.device)
        check = export_and_check(model, image, args.format, args.output, opset=args.opset, tolerance=args.tolerance)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    h, w = check.input_size
    print(f"wrote {args.output} ({args.format}, {type(model).__name__}, input 1x3x{h}x{w})")
    for where, result in (("the sample", check.sample), ("a blank image", check.blank)):
        print(
            f"checked on {where}: {result.detections} detections, max difference to eager {result.difference:.3g} "
            f"(tolerance {args.tolerance:g})"
        )
        if result.warning:
            print(f"warning: {result.warning}", file=sys.stderr)
    if check.sample.detections == 0:
        print(
            "warning: no detection passed the score threshold on the sample, so no box or score was compared; "
            "check again with the threshold at 0 (e.g. model.test_score_thresh=0.0) or another --sample-image",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
