"""The package's floors, read from the source with ``ast`` (nothing is imported):

    pure layer (assigners, losses, layers, utils)
    < config, checkpoint, data < modeling < evaluation < engine < model_zoo

A module imports only from its own floor or below, and imports at module level: an import
inside a function body is allowed only for an optional third-party dependency, listed
below with the reason it is deferred. A function-level import of the package itself is
how an import cycle gets hidden, so it is never allowed.
"""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "alignment_det")

FLOORS = {
    "assigners": 0, "losses": 0, "layers": 0, "utils": 0,
    "config": 1, "checkpoint": 1, "data": 1,
    "modeling": 2,
    "evaluation": 3,
    "engine": 4,
    "model_zoo": 5,
}

#: Third-party modules a function may import, and why the import waits for the call.
DEFERRED_THIRD_PARTY = {
    "hydra": "optional: Hydra's override grammar is used when it is installed, else ast.literal_eval",
    "torch.distributed.algorithms.ddp_comm_hooks": "needs torch.distributed, which some torch builds lack; "
    "only fp16 gradient compression uses it",
}


def _modules():
    for dirpath, dirnames, files in os.walk(PACKAGE):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "configs")]
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                yield path, rel


def _imported(node: ast.AST, module_parts):
    """Absolute dotted names an Import/ImportFrom node refers to."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        return [node.module]
    package = module_parts if _is_package(module_parts) else module_parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return [".".join(base + ([node.module] if node.module else []))]


def _is_package(parts) -> bool:
    return os.path.isdir(os.path.join(REPO, *parts))


def _floor(dotted: str):
    parts = dotted.split(".")
    if parts[0] != "alignment_det" or len(parts) < 2:
        return None
    return FLOORS.get(parts[1])


def _function_imports(tree):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def _deferred_allowed(dotted: str) -> bool:
    return any(dotted == m or dotted.startswith(m + ".") for m in DEFERRED_THIRD_PARTY)


def test_every_subpackage_has_a_floor():
    subpackages = {d for d in os.listdir(PACKAGE) if os.path.isfile(os.path.join(PACKAGE, d, "__init__.py"))}
    assert subpackages == set(FLOORS), "give each subpackage a floor in FLOORS (and in the module docstring)"


def test_no_import_inside_a_function_except_optional_third_party():
    bad = []
    for path, parts in _modules():
        tree = ast.parse(open(path).read(), path)
        for node in _function_imports(tree):
            for name in _imported(node, parts):
                if not _deferred_allowed(name):
                    bad.append(f"{os.path.relpath(path, REPO)}:{node.lineno} imports {name} inside a function")
    assert not bad, "move these imports to module level (or, for an optional extra, list it in " \
                    "DEFERRED_THIRD_PARTY with its reason):\n" + "\n".join(bad)


def test_no_import_from_a_higher_floor():
    bad = []
    for path, parts in _modules():
        own = FLOORS.get(parts[1]) if len(parts) > 1 else None
        if own is None:  # alignment_det/__init__.py imports nothing of its own
            continue
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _imported(node, parts):
                    floor = _floor(name)
                    if floor is not None and floor > own:
                        bad.append(f"{os.path.relpath(path, REPO)}:{node.lineno} ({parts[1]}, floor {own}) "
                                   f"imports {name} (floor {floor})")
    assert not bad, "a lower floor imports from a higher one:\n" + "\n".join(bad)


def test_the_checks_see_a_relative_import_for_what_it_is():
    """The resolver of relative imports that the two checks above rely on."""
    node = ast.parse("from ..engine.trainer import X").body[0]
    assert _imported(node, ["alignment_det", "model_zoo", "model_zoo"]) == ["alignment_det.engine.trainer"]
    node = ast.parse("from . import weights").body[0]
    assert _imported(node, ["alignment_det", "model_zoo"]) == ["alignment_det.model_zoo"]
    assert _floor("alignment_det.engine.trainer") > _floor("alignment_det.config.presets")
