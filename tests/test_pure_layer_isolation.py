"""The pure tensor layer never imports Detectron2 or torchvision (ARCHITECTURE.md): every module of
``assigners``, ``losses``, ``layers`` and ``utils`` is imported in a fresh interpreter
in which importing either package raises, and every attempt is recorded, so that a module which
catches the ImportError and falls back still fails the test."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE_PACKAGES = ["alignment_det.assigners", "alignment_det.losses", "alignment_det.layers", "alignment_det.utils"]
FORBIDDEN = ("detectron2", "torchvision")

PROBE = r"""
import importlib, json, pkgutil, sys

FORBIDDEN = {forbidden!r}
attempts = []

class Forbid:
    # First on sys.meta_path: sees every import before the real finders do.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            attempts.append(name)
            raise ImportError(f"the pure tensor layer must not import {{name}}")
        return None

sys.meta_path.insert(0, Forbid())
for mod in list(sys.modules):  # nothing cached from site customisation either
    if mod.split(".")[0] in FORBIDDEN:
        del sys.modules[mod]

imported, errors = [], {{}}
for pkg in {packages!r} + {extra!r}:
    try:
        m = importlib.import_module(pkg)
        imported.append(pkg)
        for info in pkgutil.walk_packages(getattr(m, "__path__", []), pkg + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    except Exception as e:
        errors[pkg] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps(dict(imported=imported, attempts=attempts, errors=errors)))
"""


def _probe(packages, extra=()):
    code = PROBE.format(forbidden=FORBIDDEN, packages=list(packages), extra=list(extra))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pure_layer_imports_neither_detectron2_nor_torchvision():
    out = _probe(PURE_PACKAGES)
    assert out["errors"] == {}, out["errors"]
    assert out["attempts"] == [], f"the pure layer tried to import {out['attempts']}"
    # Every package and at least one module of each was really imported.
    for pkg in PURE_PACKAGES:
        assert pkg in out["imported"] and any(m.startswith(pkg + ".") for m in out["imported"]), pkg


@pytest.mark.parametrize("module", ["alignment_det.engine", "alignment_det.modeling"])
def test_the_probe_catches_a_module_that_does_import_them(module):
    # The Detectron2 layer does import Detectron2: the same probe must see it, or the test above
    # could pass without checking anything.
    pytest.importorskip("detectron2")
    out = _probe([], extra=[module])
    assert out["attempts"] and out["attempts"][0].split(".")[0] in FORBIDDEN
    assert module in out["errors"]
