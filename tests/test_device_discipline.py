"""Device discipline: tensors are made on the device of the tensors they meet.

1. A static scan (``ast``) of every module under ``alignment_det/``: a call of a tensor factory
   (``torch.zeros/ones/full/empty/arange/tensor/as_tensor/linspace/eye/randperm``) must say its
   ``device=``. On a GPU a factory without it makes a CPU tensor, and the first operation that mixes
   it with the model's CUDA tensors fails (a 0-dim CPU tensor is taken as a scalar, with a
   host-to-device copy). Exempt:
   ``*_like`` / ``Tensor.new_*`` (they inherit the device); tensors handed to ``nn.Parameter`` or
   ``register_buffer`` (``Module.to(device)`` moves them with the model); and the functions of
   :data:`CPU_ONLY`, each with its reason.

2. The pure layer's assigners, losses and layers run under
   ``torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=False)`` on fake
   ``device="cuda"`` inputs. This needs no GPU: fake tensors carry only metadata, and any operation
   that mixes a fake CUDA tensor with a CPU tensor of one or more dimensions raises
   ``FakeTensorDeviceMismatchError`` (as the real kernels would on a GPU), while a tensor made on CPU
   inside a function without ``allow_non_fake_inputs`` is a fake CPU tensor, so the mismatch is seen.
   A ``ShapeEnv`` gives data-dependent sizes (``nonzero``, boolean masks) symbolic values, so code
   that only computes with such sizes runs too. Torch itself lets a **0-dim** CPU tensor meet a CUDA tensor (a CPU scalar), so
   such tensors are caught only by the static scan.

   Covered (every output checked to be on ``cuda``; :data:`FAKE_CUDA_CASES`):
   assigners ``square_anchor_grid``, ``fcos_targets``, ``centerness_targets``, ``bag_eligible``,
   ``build_anchor_bags``, ``center_prior_mask``, ``poto_quality``; losses ``o2o_losses``,
   ``atss_losses``, ``focal_targets``, ``sigmoid_focal_loss``, ``GHMHarmonizer``, ``prior_ious``,
   ``conditioning_factor``, ``residual_factor``, ``HCRACLoss``, ``HCRARLoss``, ``objectness_loss``;
   boxes ``ltrb_to_boxes``, ``iou_targets``; layers ``AnchorDepression``, ``depression_mask``,
   ``depress_features``, ``max_filter_3d``, ``MaxFiltering3D``, ``fuse_filter_logits``, ``fuse_scores``, ``fuse_logits``.

   Not covered, and why:

   - ``atss_assign``, ``empty_center_fallback_mask``, ``fcos_o2m_losses``, ``retinanet_o2m_losses``,
     ``mal_losses`` (with the bag selection it calls): each branches in Python on tensor values or on a data-dependent size
     (:data:`DATA_DEPENDENT_CASES` gives the line), which a fake tensor does not have, even with a
     ``ShapeEnv`` (it stops with ``GuardOnDataDependentSymNode``). They run on CPU in their own tests,
     and the static scan covers their factories.
   - ``hungarian_match``, ``one_to_one_assign``, ``onenet_cost_assign``: scipy's
     ``linear_sum_assignment`` needs the cost values on the host (``.cpu().numpy()``).
   - ``selection_count``, ``effective_bag_size``, ``depression_ratio``: Python numbers, no tensors.
   - ``ALWA`` (``losses/alwa_weighting.py``) holds no tensor factory: its buffers move with it.

   Checked by breaking it: a ``torch.zeros(n, 4)`` added inside ``iou_targets``, or
   ``square_anchor_grid`` moving its grid to the CPU, fails the cases that reach them.
"""
import ast
import contextlib
import os

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode, ShapeEnv

from alignment_det.assigners import atss, fcos_targets, mal_bags, one_to_one
from alignment_det.layers import anchor_depression, max_filter_3d, score_fusion
from alignment_det.losses import atss_losses, date_losses, focal, ghm, hcra, mal_loss, objectness
from alignment_det.utils import boxes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "alignment_det")

FACTORIES = frozenset({"zeros", "ones", "full", "empty", "arange", "tensor", "as_tensor", "linspace", "eye", "randperm"})
# Calls whose tensor arguments become module state, moved by ``Module.to(device)``.
MODULE_STATE_CALLS = frozenset({"Parameter", "register_buffer"})

# "path relative to the repo:function (Class.method)": why it may make tensors on the CPU.
# Keep it short: a function that runs on the model's tensors belongs in no such list.
CPU_ONLY = {}


def _call_name(call: ast.Call) -> str:
    fn = call.func
    return fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""


def undeviced_factories(source: str, filename: str = "<string>"):
    """[(line, "Class.function" or "<module>", "torch.zeros"), ...]: tensor factories called
    without ``device=`` outside module state (see the module docstring), plus any
    ``from torch import <factory>`` (which would hide calls from this scan)."""
    tree = ast.parse(source, filename)
    exempt = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in MODULE_STATE_CALLS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                exempt.update(id(n) for n in ast.walk(arg))
    found = []

    class Visitor(ast.NodeVisitor):
        scope = []

        def _scoped(self, node):
            self.scope.append(node.name)
            self.generic_visit(node)
            self.scope.pop()

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

        def visit_ImportFrom(self, node):
            if node.module == "torch":
                for alias in node.names:
                    if alias.name in FACTORIES:
                        found.append((node.lineno, ".".join(self.scope) or "<module>", f"from torch import {alias.name}"))

        def visit_Call(self, node):
            fn = node.func
            if (
                isinstance(fn, ast.Attribute) and fn.attr in FACTORIES
                and isinstance(fn.value, ast.Name) and fn.value.id == "torch"
                and not any(k.arg == "device" for k in node.keywords)
                and id(node) not in exempt
            ):
                found.append((node.lineno, ".".join(self.scope) or "<module>", f"torch.{fn.attr}"))
            self.generic_visit(node)

    Visitor().visit(tree)
    return found


def _package_offenders():
    """{"alignment_det/x.py:Class.function": ["line 12: torch.zeros", ...]} over the package."""
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, REPO).replace(os.sep, "/")
            with open(path, encoding="utf-8") as f:
                for line, func, what in undeviced_factories(f.read(), path):
                    out.setdefault(f"{rel}:{func}", []).append(f"line {line}: {what}")
    return out


def test_scan_flags_factories_without_device():
    src = (
        "import torch\n"
        "from torch import nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        self.w = nn.Parameter(torch.ones(3))\n"
        "        self.register_buffer('b', torch.arange(4) / 4)\n"
        "    def forward(self, x):\n"
        "        a = torch.zeros(3, device=x.device)\n"
        "        b = torch.zeros_like(x) + x.new_ones(3)\n"
        "        c = torch.tensor([1, 2])\n"
        "        return torch.full((2,), 1.0, **{'device': x.device}), c\n"
        "def f():\n"
        "    from torch import eye\n"
    )
    assert undeviced_factories(src) == [
        (10, "M.forward", "torch.tensor"),
        (11, "M.forward", "torch.full"),  # a device hidden in **kwargs is not said
        (13, "f", "from torch import eye"),
    ]


def test_alignment_det_says_the_device_of_every_tensor_it_makes():
    offenders = _package_offenders()
    unexplained = {k: v for k, v in offenders.items() if k not in CPU_ONLY}
    assert not unexplained, (
        "Tensor factories without device= (pass device=<the input's .device>, use *_like / new_*, or, "
        "for code that never sees the model's tensors, add it to CPU_ONLY with the reason):\n"
        + "\n".join(f"  {k}: {', '.join(v)}" for k, v in sorted(unexplained.items()))
    )
    stale = sorted(set(CPU_ONLY) - set(offenders))
    assert not stale, f"CPU_ONLY lists functions that no longer make CPU tensors; remove them: {stale}"


# ----------------------------------------------------------------------------- fake CUDA execution

K, G, N = 3, 4, 2  # classes, ground truths, images


def _boxes(n, d, size=64.0):
    xy = torch.rand(n, 2, device=d) * size / 2
    return torch.cat([xy, xy + 4 + torch.rand(n, 2, device=d) * size / 2], dim=1)


def _grid(d):
    return atss.square_anchor_grid(64, 64, strides=(8, 16), device=d)  # 80 anchors, [64, 16] per level


def _locations(d):
    anchors, counts = _grid(d)
    locs = (anchors[:, :2] + anchors[:, 2:]) / 2
    level = torch.cat([torch.full((n,), i, dtype=torch.long, device=d) for i, n in enumerate(counts)])
    strides = torch.cat([torch.full((n,), float(s), device=d) for s, n in zip((8, 16), counts)])
    return locs, level, strides


def _gt_classes(d, n=G):
    return torch.randint(0, K, (n,), device=d)


def _features(d, levels=2, channels=8):
    return [torch.rand(N, channels, 8 // 2**i, 8 // 2**i, device=d) for i in range(levels)]


def _on(d, module_class, **kwargs):
    """``module_class(**kwargs)`` with its parameters and buffers made on ``d`` (``Module.to`` cannot
    swap fake parameters). Only the construction runs under the default device: around the forward
    it would give CPU factories inside the function the device and hide them."""
    with torch.device(d):
        return module_class(**kwargs)


def _o2o(d):
    R = _grid(d)[0].shape[0]
    matches = [(torch.tensor([1, 5], device=d), torch.tensor([0, 2], device=d))] * N
    return date_losses.o2o_losses(torch.randn(N, R, K, device=d), _boxes(N * R, d).view(N, R, 4), [_boxes(G, d)] * N,
                                  [_gt_classes(d)] * N, matches, [(64, 64)] * N)


def _o2m(d):
    R = 80
    return date_losses.fcos_o2m_losses(
        torch.randn(R, K, device=d), torch.rand(R, 4, device=d) * 10, torch.randn(R, device=d),
        torch.randint(0, K + 1, (R,), device=d), torch.rand(R, 4, device=d) * 10 + 1, torch.rand(R, device=d))


def _atss(d):
    P = 6
    return atss_losses.atss_losses(
        torch.randn(N, 80, K, device=d), torch.randint(0, K + 1, (N, 80), device=d), _boxes(P, d), _boxes(P, d),
        torch.rand(P, device=d), torch.randn(P, device=d), torch.rand(P, device=d), torch.rand((), device=d) + 1,
        init_boxes=_boxes(P, d))


def _retina_o2m(d):
    return date_losses.retinanet_o2m_losses(
        torch.randn(N, 80, K, device=d), torch.randn(N, 80, 4, device=d), torch.randint(-1, K + 1, (N, 80), device=d),
        _grid(d)[0], _boxes(N * 80, d).view(N, 80, 4))


def _hcrac(d):
    return _on(d, hcra.HCRACLoss, sync=False)(torch.randn(N, 80, K, device=d), (torch.rand(N, 80, K, device=d) > 0.9).float(), torch.rand(N, 80, device=d))


def _mal(d):
    anchors = _grid(d)[0]
    return mal_loss.mal_losses(torch.randn(N, 80, K, device=d), torch.randn(N, 80, 4, device=d) * 0.1, anchors,
                               [_boxes(G, d)] * N, [_gt_classes(d)] * N, bag_size=5, progress=0.5)


# name -> function of the device that calls the pure-layer function on tensors made there
FAKE_CUDA_CASES = {
    "atss.square_anchor_grid": _grid,
    "fcos_targets.fcos_targets": lambda d: fcos_targets.fcos_targets(
        *_locations(d)[:2], _boxes(G, d), _gt_classes(d), K, regress_ranges=((-1, 32), (32, float("inf")))),
    "fcos_targets.centerness_targets": lambda d: fcos_targets.centerness_targets(torch.rand(7, 4, device=d) + 0.1),
    "mal_bags.bag_eligible": lambda d: mal_bags.bag_eligible(_boxes(G, d)),
    "mal_bags.build_anchor_bags": lambda d: mal_bags.build_anchor_bags(_boxes(G, d), _grid(d)[0], 5),
    "one_to_one.center_prior_mask": lambda d: one_to_one.center_prior_mask(_locations(d)[0], _locations(d)[2], _boxes(G, d)),
    "one_to_one.poto_quality": lambda d: one_to_one.poto_quality(
        torch.rand(80, G, device=d), torch.rand(80, G, device=d), center_mask=torch.rand(80, G, device=d) > 0.5),
    "date_losses.o2o_losses": _o2o,
    "boxes.ltrb_to_boxes": lambda d: boxes.ltrb_to_boxes(_locations(d)[0], torch.rand(80, 4, device=d)),
    "focal.focal_targets": lambda d: focal.focal_targets(torch.randint(-1, K + 1, (N, 80), device=d), K),
    "atss_losses.atss_losses": _atss,
    "focal.sigmoid_focal_loss": lambda d: focal.sigmoid_focal_loss(
        torch.randn(5, K, device=d), torch.rand(5, K, device=d), reduction="sum"),
    "ghm.GHMHarmonizer": lambda d: _on(d, ghm.GHMHarmonizer, sync=False)(torch.rand(80, K, device=d), torch.rand(80, K, device=d) > 0.2),
    "hcra.prior_ious": lambda d: hcra.prior_ious(
        _boxes(80, d), _boxes(G, d), torch.rand(80, device=d) > 0.7, _boxes(80, d)),
    "hcra.conditioning_factor / residual_factor": lambda d: (
        hcra.conditioning_factor(torch.rand(9, device=d), torch.rand(9, device=d) > 0.5, 0.7),
        hcra.residual_factor(torch.rand(9, device=d), torch.rand(9, device=d), torch.rand(9, device=d) > 0.5,
                             theta=5.0, alpha=0.0, mode="mirrored")),
    "hcra.HCRACLoss": _hcrac,
    "hcra.HCRARLoss": lambda d: _on(d, hcra.HCRARLoss, sync=False)(_boxes(6, d), _boxes(6, d), torch.rand(6, device=d)),
    "boxes.iou_targets": lambda d: boxes.iou_targets(_boxes(6, d), _boxes(6, d)),
    "objectness.objectness_loss": lambda d: objectness.objectness_loss(
        torch.randn(N, 80, device=d), torch.rand(N, 80, device=d), torch.rand(N, 80, device=d) > 0.8, normalizer=3.0,
        valid_mask=torch.rand(N, 80, device=d) > 0.1, neg_weight=0.5),
    "anchor_depression.AnchorDepression": lambda d: _on(d, anchor_depression.AnchorDepression)(
        _features(d), iteration=10, max_iter=100)[0],
    "anchor_depression.depression_mask / depress_features": lambda d: (
        anchor_depression.depression_mask(_features(d)[0], ratio=0.3),
        anchor_depression.depress_features(_features(d)[0], ratio=0.3)),
    "max_filter_3d.max_filter_3d": lambda d: max_filter_3d.max_filter_3d(_features(d)),
    "max_filter_3d.MaxFiltering3D": lambda d: _on(d, max_filter_3d.MaxFiltering3D, in_channels=8, num_levels=2, norm_groups=4)(
        _features(d)),
    "max_filter_3d.fuse_filter_logits": lambda d: max_filter_3d.fuse_filter_logits(torch.randn(5, K, device=d), torch.randn(5, K, device=d)),
    "score_fusion.fuse_scores / fuse_logits": lambda d: (
        score_fusion.fuse_scores(torch.rand(5, K, device=d), torch.rand(5, 1, device=d)),
        score_fusion.fuse_logits(torch.randn(5, K, device=d), torch.randn(5, 1, device=d))),
}


# Cases that fake execution cannot run: the function branches in Python on a tensor's values or on a
# data-dependent size (nonzero, boolean masks), which a fake tensor does not have. They stop with
# GuardOnDataDependentSymNode; test_data_dependent_cases_still_stop says so if that changes.
DATA_DEPENDENT_CASES = {
    # _check_inputs: bool(isfinite(gt_boxes).all()), then `if a_idx.numel():` on the positives
    "atss.atss_assign": lambda d: atss.atss_assign(*_grid(d), _boxes(G, d)),
    "atss.atss_assign (EATSS, ranked by predicted boxes)": lambda d: atss.atss_assign(
        *_grid(d), _boxes(G, d), num_extra=3, rank_boxes=_boxes(80, d)),
    # `if R == 0 or not bool(empty.any())`: only columns without candidates are repaired
    "one_to_one.empty_center_fallback_mask": lambda d: one_to_one.empty_center_fallback_mask(
        torch.rand(80, G, device=d) > 0.5, _locations(d)[0], _locations(d)[2], _boxes(G, d)),
    # the positives' count goes to the host: torch.tensor(float(pos.numel()), device=...)
    "date_losses.fcos_o2m_losses": _o2m,
    "date_losses.retinanet_o2m_losses": _retina_o2m,
    # the eligible GTs come from nonzero, then `if num_gt == 0` in build_anchor_bags
    "mal_loss.mal_losses": _mal,
}


def _tensors(out):
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _tensors(v)


@contextlib.contextmanager
def fake_cuda():
    """FakeTensorMode on fake CUDA tensors, with TorchScript's optimising executor off: a scripted
    function (the focal loss) first run on fake CUDA tensors would otherwise be specialised for a
    CUDA fuser, and every later call in the process, on real CPU tensors too, fails loading
    libcuda (seen when pytest-xdist ran these cases before any CPU call of it in a worker)."""
    with torch.jit.optimized_execution(False), FakeTensorMode(allow_non_fake_inputs=False, shape_env=ShapeEnv()):
        yield


@pytest.mark.parametrize("name", sorted(FAKE_CUDA_CASES))
def test_case_runs_for_real_on_cpu(name):
    """The cases are valid calls: on real CPU tensors they run and return tensors."""
    assert list(_tensors(FAKE_CUDA_CASES[name]("cpu")))


@pytest.mark.parametrize("name", sorted(FAKE_CUDA_CASES))
def test_runs_on_fake_cuda_without_a_cpu_tensor(name):
    """Under FakeTensorMode every input is a fake CUDA tensor: a CPU tensor made inside the function
    raises on the first mixed-device operation, or shows up as a CPU output."""
    torch.manual_seed(0)
    with fake_cuda():
        outputs = list(_tensors(FAKE_CUDA_CASES[name]("cuda")))
    assert outputs
    assert {t.device.type for t in outputs} == {"cuda"}, [(t.shape, t.device) for t in outputs]


def test_fake_cuda_mode_catches_a_cpu_tensor():
    """The check itself: a tensor made without device= meets a fake CUDA tensor and raises."""
    with fake_cuda():
        x = torch.rand(4, 2, device="cuda")
        x + torch.ones(4, 2, device=x.device)
        with pytest.raises(RuntimeError, match="device"):
            x + torch.ones(4, 2)


@pytest.mark.parametrize("name", sorted(DATA_DEPENDENT_CASES))
def test_data_dependent_case_runs_for_real_on_cpu(name):
    assert list(_tensors(DATA_DEPENDENT_CASES[name]("cpu")))


@pytest.mark.parametrize("name", sorted(DATA_DEPENDENT_CASES))
def test_data_dependent_cases_still_stop(name):
    """Not covered by fake execution, for the reason given beside each case; if one now runs, move it
    to FAKE_CUDA_CASES (and the module docstring)."""
    with fake_cuda():
        with pytest.raises(GuardOnDataDependentSymNode):
            DATA_DEPENDENT_CASES[name]("cuda")
