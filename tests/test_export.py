"""tools/export.py: every method exports (ONNX, TorchScript, torch.export where it can) from a tiny
random-weight instant-test model, the exported file's detections equal eager on the sample and on a
blank image (no candidate above the threshold), every export has the interface images (1, 3, H, W) ->
boxes, scores, classes padded with class -1, and what cannot export fails with a message naming the
op and the format.

The DATE ONNX round trip (onnxruntime against the eager model, within 1e-4) runs wherever onnx and
onnxruntime are installed (``pip install -e ".[export]"``); the other ONNX tests too.
"""
import os
import re
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from detectron2.config import instantiate  # noqa: E402

from _cli import REPO, instant_config  # noqa: E402
from alignment_det.config import load_config  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tools"))
import export  # noqa: E402

HAS_ORT = export._importable("onnx") and export._importable("onnxruntime")
needs_ort = pytest.mark.skipif(not HAS_ORT, reason='onnx / onnxruntime not installed (pip install -e ".[export]")')

# (name, instant config, the config key of the score threshold)
NMS_METHODS = [
    ("RetinaNet", "retinanet_instant_test.py", "model.test_score_thresh"),
    ("FCOS", "fcos_instant_test.py", "model.test_score_thresh"),
    ("ATSS", "atss_instant_test.py", "model.test_score_thresh"),
    ("MAL", "mal_instant_test.py", "model.test_score_thresh"),
    ("RetinaNetConf", "retinanet_conf_instant_test.py", "model.test_score_thresh"),
    ("HCRAL-ATSS", "hcral_atss_instant_test.py", "model.test_score_thresh"),
    ("HCRAL-RetinaNet", "hcral_retinanet_instant_test.py", "model.test_score_thresh"),
    ("RetinaNet+ALWA", "retinanet_alwa_instant_test.py", "model.test_score_thresh"),
    ("FasterRCNN+ALWA", "faster_rcnn_alwa_instant_test.py", "model.roi_heads.box_predictor.test_score_thresh"),
]
DATE_INSTANT = instant_config("date_instant_test.py")


def random_checkpoint(config, path, overrides=(), *, date_box_bias=False):
    """Save the random initial weights of ``config``'s model as a Detectron2 checkpoint."""
    cfg = load_config(config, list(overrides))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    if date_box_bias:  # untrained ltrb ~ 0 gives empty boxes; make them ~1 stride
        torch.nn.init.constant_(model.head.bbox_pred.bias, 1.0)
    torch.save({"model": model.state_dict()}, str(path))
    return str(path)


def onnx_op_types(graph):
    """Op types of an ONNX graph, those inside If / Loop bodies included."""
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                ops |= onnx_op_types(sub)
    return ops


def run_tool(capsys, *args):
    rc = export.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def printed(out, where="the sample"):
    m = re.search(rf"checked on {where}: (\d+) detections, max difference to eager ([-+.\deinf]+)", out)
    assert m, out
    return int(m.group(1)), float(m.group(2))


def threshold_above_blank(cfg_file, ckpt, key):
    """A score threshold just above every eager score on the blank image (0 if it has no detection
    at threshold 0): the blank then has no candidate, while the sample, where random weights score
    higher at some locations, keeps thousands. Returns it with the blank (1, 3, H, W) batch."""
    from alignment_det.engine import build_eval_model

    cfg = load_config(cfg_file, [f"{key}=0.0"])
    model = build_eval_model(cfg, ckpt)
    blank = export.blank_like(model, export.load_sample_image(cfg, None)[None])
    with torch.no_grad():
        scores = model([{"image": blank[0]}])[0]["instances"].scores
    return (float(scores.max()) * (1 + 1e-3) if len(scores) else 0.0), blank


@pytest.fixture(scope="session")
def nms_model(once_per_session):
    """``nms_model(config, thresh_key) -> (checkpoint, threshold, blank)``: the random weights of an
    NMS method's instant config and :func:`threshold_above_blank` for them, made once per session
    and shared by its export formats (building, saving and scoring them is most of a format's test)."""
    def get(config, key):
        cfg_file = instant_config(config)

        def make(folder):
            folder.mkdir(parents=True)
            ckpt = random_checkpoint(cfg_file, folder / "m.pth")
            threshold, blank = threshold_above_blank(cfg_file, ckpt, key)
            torch.save(blank, folder / "blank.pt")
            return repr(threshold)  # repr: the exact float back

        folder, text = once_per_session(f"export_{config[:-len('.py')]}", make)
        return str(folder / "m.pth"), float(text), torch.load(folder / "blank.pt")

    return get


@pytest.fixture(scope="session")
def date_checkpoint(once_per_session):
    """Random DATE instant-test weights with boxes of about one stride (``date_box_bias``), once."""
    def make(folder):
        folder.mkdir(parents=True)
        random_checkpoint(DATE_INSTANT, folder / "date.pth", date_box_bias=True)
        return ""

    folder, _ = once_per_session("export_date", make)
    return str(folder / "date.pth")


def run_file(fmt, path, images):
    """Outputs of an exported file on (1, 3, H, W) images, and its (input, output) names for ONNX."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        assert session.get_inputs()[0].shape == list(images.shape)
        return [torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})], names
    return list(torch.jit.load(str(path))(images)), None


def date_model_and_sample(ckpt, threshold):
    from alignment_det.engine import build_eval_model

    cfg = load_config(DATE_INSTANT, [f"model.test_score_thresh={threshold}"])
    model = build_eval_model(cfg, ckpt)
    image = export.pad_to_divisibility(model, export.load_sample_image(cfg, None))
    return model, image


def date_threshold(ckpt):
    """A score threshold inside the 100 detections of the sample, so that some rows become padding:
    the middle of the widest gap between ranks 30 and 70 (a threshold on a score itself would let
    float rounding in another runtime decide that detection)."""
    model, image = date_model_and_sample(ckpt, 0.0)
    with torch.no_grad():
        scores = model([{"image": image}])[0]["instances"].scores  # sorted descending
    assert len(scores) == 100
    gaps = scores[30:70] - scores[31:71]
    i = 30 + int(gaps.argmax())
    return float((scores[i] + scores[i + 1]) / 2)


# ------------------------------------------------------------------------------------------ DATE
@needs_ort
def test_date_onnx_round_trip_equals_eager_within_1e4(tmp_path, capsys, date_checkpoint):
    import onnx
    import onnxruntime as ort

    ckpt = date_checkpoint
    thr = date_threshold(ckpt)
    out_file = tmp_path / "date.onnx"
    rc, out, err = run_tool(
        capsys, "--config-file", DATE_INSTANT, "--checkpoint", ckpt, "--format", "onnx", "--output", out_file,
        f"model.test_score_thresh={thr}",
    )
    assert rc == 0, err
    n, diff = printed(out)
    assert 0 < n < 100 and diff <= 1e-4

    graph = onnx.load(str(out_file))
    assert "NonMaxSuppression" not in onnx_op_types(graph.graph)  # NMS-free
    assert not any("o2m" in init.name for init in graph.graph.initializer)  # o2m branch dropped

    # onnxruntime on the file against the eager model's own inference (not the export wrapper), on the
    # sample and on a blank image (random weights score it alike everywhere, below the threshold)
    model, image = date_model_and_sample(ckpt, thr)
    blank = export.blank_like(model, image[None])[0]
    assert printed(out, "a blank image") == (0, 0.0)
    session = ort.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    for x, count in ((image, n), (blank, 0)):
        boxes, scores, classes = (torch.from_numpy(o) for o in session.run(None, {"images": x[None].numpy()}))
        with torch.no_grad():
            inst = model([{"image": x}])[0]["instances"]
        valid = classes[0] >= 0
        assert int(valid.sum()) == len(inst) == count
        assert torch.all(scores[0][~valid] == 0)
        onnx_dets = {"boxes": boxes[0][valid], "scores": scores[0][valid], "classes": classes[0][valid]}
        eager = {"boxes": inst.pred_boxes.tensor, "scores": inst.scores, "classes": inst.pred_classes}
        assert export.detection_difference(eager, onnx_dets) <= 1e-4


@pytest.mark.parametrize("fmt", ["torchscript", "torch_export"])
def test_date_exports_as_one_graph(fmt, tmp_path, capsys, date_checkpoint):
    ckpt = date_checkpoint
    out_file = tmp_path / f"date.{fmt}"
    rc, out, err = run_tool(capsys, "--config-file", DATE_INSTANT, "--checkpoint", ckpt, "--format", fmt, "--output", out_file)
    assert rc == 0, err
    n, diff = printed(out)
    assert n > 0 and diff <= 1e-4
    assert printed(out, "a blank image")[1] <= 1e-4
    if fmt == "torchscript":
        graph = str(torch.jit.load(str(out_file)).inlined_graph)
        assert "nms" not in graph and "o2m" not in graph


def test_a_check_without_detections_warns(tmp_path, capsys):
    # random 3DMF weights: sigma(cls) * sigma(filter) ~ 0.005, below the 0.01 threshold on every location
    ckpt = random_checkpoint(DATE_INSTANT, tmp_path / "d.pth", ["model.head.use_3dmf=True"])
    rc, out, err = run_tool(
        capsys, "--config-file", DATE_INSTANT, "--checkpoint", ckpt, "--format", "torchscript", "--output", tmp_path / "d.ts",
        "model.head.use_3dmf=True",
    )
    assert rc == 0 and printed(out)[0] == 0
    assert "no detection passed the score threshold" in err


# ------------------------------------------------------------------------------ NMS-based methods
@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=needs_ort)])
@pytest.mark.parametrize("name,config,thresh_key", NMS_METHODS, ids=[m[0] for m in NMS_METHODS])
def test_nms_methods_export_and_run_on_a_blank_image(name, config, thresh_key, fmt, tmp_path, capsys, nms_model):
    cfg_file = instant_config(config)
    ckpt, threshold, blank = nms_model(config, thresh_key)
    thresh = f"{thresh_key}={threshold}"
    out_file = tmp_path / f"m.{fmt}"
    rc, out, err = run_tool(
        capsys, "--config-file", cfg_file, "--checkpoint", ckpt, "--format", fmt, "--output", out_file,
        "--tolerance", "1e-3", thresh,
    )
    assert rc == 0, err
    n, diff = printed(out)
    assert n > 0 and diff <= 1e-3
    assert printed(out, "a blank image") == (0, 0.0)  # checked by the tool, without a tie warning
    assert "tie" not in err
    # the post-processing, NMS included, is inside the graph
    if fmt == "onnx":
        import onnx

        assert "NonMaxSuppression" in onnx_op_types(onnx.load(str(out_file)).graph)
    else:
        assert "torchvision::nms" in str(torch.jit.load(str(out_file)).inlined_graph)

    # The file itself on a blank image: DATE's interface, only padding rows.
    (boxes, scores, classes), names = run_file(fmt, out_file, blank)
    D = boxes.shape[1]
    assert boxes.shape == (1, D, 4) and scores.shape == classes.shape == (1, D) and D >= n
    assert torch.all(classes == -1) and torch.all(scores == 0) and torch.all(boxes == 0)
    if names is not None:
        assert names == (["images"], ["boxes", "scores", "classes"])


def test_torch_export_of_nms_post_processing_fails_clearly(tmp_path, capsys, nms_model):
    cfg_file = instant_config("retinanet_instant_test.py")
    ckpt, _, _ = nms_model("retinanet_instant_test.py", "model.test_score_thresh")
    rc, out, err = run_tool(capsys, "--config-file", cfg_file, "--checkpoint", ckpt, "--format", "torch_export", "--output", tmp_path / "m.pt2")
    assert rc == 2
    assert "torch_export" in err and "data-dependent" in err and "--format torchscript" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------- failures
def _fcos_model_and_sample():
    cfg = load_config(instant_config("fcos_instant_test.py"), ["model.test_score_thresh=0.0"])
    torch.manual_seed(0)
    return instantiate(cfg.model).eval(), export.load_sample_image(cfg, None)


def test_deformable_conv_is_refused_naming_layer_and_format(tmp_path):
    from detectron2.layers import DeformConv

    model, image = _fcos_model_and_sample()
    model.head.cls_subnet[0] = DeformConv(64, 64, kernel_size=3, padding=1)
    for fmt in export.FORMATS:
        with pytest.raises(export.ExportError, match=rf"^{fmt}: layer 'head\.cls_subnet\.0' is a DeformConv"):
            export.export_and_check(model, image, fmt, str(tmp_path / "m"))


@needs_ort
def test_op_without_onnx_symbolic_is_named(tmp_path):
    class LogGamma(torch.nn.Module):  # aten::lgamma has no ONNX symbolic
        def forward(self, x):
            return torch.lgamma(x.abs() + 1)

    model, image = _fcos_model_and_sample()
    model.head.cls_score = torch.nn.Sequential(model.head.cls_score, LogGamma())
    with pytest.raises(export.ExportError, match=r"^onnx: export of FCOS failed: op aten::lgamma \(ONNX opset 17\)"):
        export.export_and_check(model, image, "onnx", str(tmp_path / "m.onnx"))
    # the same model traces for TorchScript
    check = export.export_and_check(model, image, "torchscript", str(tmp_path / "m.ts"))
    assert check.sample.detections > 0 and check.sample.difference == 0


class FrozenTopK(torch.nn.Module):
    """A toy detector with the bug of a top-k count taken by Python's ``min()``: traced on a sample with
    more than 5 candidates, the graph keeps k = 5, which fails on a blank image (pixel mean 0: none)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pixel_mean", torch.zeros(3))

    def forward(self, images):
        scores = images.mean(1).flatten()
        candidates = scores[scores > 0.5]
        top = candidates.topk(min(candidates.shape[0], 5)).values[None]
        return top.new_zeros(*top.shape, 4), top, torch.zeros_like(top, dtype=torch.long)


@pytest.mark.parametrize(
    "fmt,runtime_says",
    [("torchscript", "selected index k out of range"), pytest.param("onnx", r"k argument \[5\]", marks=needs_ort)],
)
def test_a_graph_that_fails_on_a_blank_image_is_an_error(fmt, runtime_says, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "export_spec", lambda model, image: export.ExportSpec(model, image[None]))
    sample = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(export.ExportError) as e:
        export.export_and_check(FrozenTopK(), sample, fmt, str(tmp_path / "m"))
    assert re.match(rf"{fmt}: the exported FrozenTopK runs on the sample but fails on a blank image", str(e.value))
    assert re.search(rf"gives 0 detections: [^\n]*{runtime_says}", str(e.value)), str(e.value)
    assert "top-k count" in str(e.value)


def test_a_model_without_a_detection_limit_is_refused(tmp_path):
    model, image = _fcos_model_and_sample()
    model.max_detections_per_image = -1
    with pytest.raises(export.ExportError, match=r"model\.max_detections_per_image = -1; set it to a positive integer"):
        export.export_and_check(model, image, "torchscript", str(tmp_path / "m.ts"))


def test_missing_weights_or_sample_are_errors(tmp_path, capsys, nms_model):
    cfg_file = instant_config("fcos_instant_test.py")
    with pytest.raises(SystemExit):
        export.main(["--config-file", cfg_file, "--format", "torchscript", "--output", str(tmp_path / "m.ts")])
    assert "give the weights" in capsys.readouterr().err
    ckpt, _, _ = nms_model("fcos_instant_test.py", "model.test_score_thresh")
    rc, _, err = run_tool(
        capsys, "--config-file", cfg_file, "--checkpoint", ckpt, "--format", "torchscript", "--output", tmp_path / "m.ts",
        "--sample-image", tmp_path / "missing.jpg",
    )
    assert rc == 2 and "missing.jpg" in err and "no such file" in err


# --------------------------------------------------------------------------------- comparison
def test_detection_difference_matches_sets_by_class():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 300.0, 500.0]])
    eager = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "classes": torch.tensor([0, 1])}
    # same detections in the other order: no difference
    swapped = {k: v.flip(0) for k, v in eager.items()}
    assert export.detection_difference(eager, swapped) == 0.0
    # a score off by 2e-5 (absolute, scores <= 1) and x1 = 500 off by 0.01 px (relative: 0.01 / 500 = 2e-5)
    moved = {k: v.clone() for k, v in eager.items()}
    moved["scores"][0] += 2e-5
    moved["boxes"][1, 3] += 0.01
    assert export.detection_difference(eager, moved) == pytest.approx(2e-5, rel=1e-2)  # float32 rounding of 0.90002
    # a class changed, or a detection missing: no match
    other = {k: v.clone() for k, v in eager.items()}
    other["classes"][1] = 2
    assert export.detection_difference(eager, other) == float("inf")
    assert export.detection_difference(eager, {k: v[:1] for k, v in eager.items()}) == float("inf")


def test_a_blank_image_mismatch_is_a_warning_only_among_tied_scores():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [40.0, 40.0, 60.0, 60.0]])
    tied = {"boxes": boxes, "scores": torch.tensor([0.3, 0.3, 0.3]), "classes": torch.tensor([0, 0, 0])}
    other_tie_kept = {k: v[[0, 2]] for k, v in tied.items()}  # NMS kept another of the tied boxes
    check = export.compare_detections("onnx", "a blank image", tied, other_tie_kept, 1e-4, allow_ties=True)
    assert check.detections == 3 and check.difference == float("inf")
    assert "gives 2 detections on a blank image, eager 3" in check.warning and "tie" in check.warning
    with pytest.raises(export.ExportError, match=r"^onnx: the exported graph gives 2 detections on a blank image, eager 3$"):
        export.compare_detections("onnx", "a blank image", tied, other_tie_kept, 1e-4)
    distinct = dict(tied, scores=torch.tensor([0.5, 0.4, 0.3]))
    with pytest.raises(export.ExportError, match="differ from eager by"):
        export.compare_detections("onnx", "a blank image", distinct, dict(distinct, scores=torch.tensor([0.5, 0.4, 0.2])), 1e-4, allow_ties=True)
    assert export.compare_detections("onnx", "the sample", distinct, distinct, 1e-4) == (3, 0.0, "")
