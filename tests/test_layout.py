"""The house rules of the package, checked on its source: imports point down the layers only (in
functions too), no import cycle, nothing imports the CLI, built-in plugins import only the public
plugin API, and no module or function grows past its size limit. See README "Layout"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fturun"

#: top-level unit of the package (a module or a sub-package) -> its layer; a unit may import
#: units of its own layer or below, never above
LAYERS = {
    # 0: mechanisms with no fturun dependencies above them
    "errors": 0, "io": 0, "dist": 0, "paths": 0, "redaction": 0, "resources": 0, "clock": 0,
    "hub": 0, "modelinfo": 0, "dataset_features": 0, "optim_names": 0, "lock": 0, "console": 0,
    # 1: the recipe language
    "recipe": 1, "json_text": 1,
    # 2: plugins, registry, schema, tasks, the public plugin API
    "registry": 2, "hookspecs": 2, "plugins": 2, "schema": 2, "tasks": 2, "context": 2,
    "api": 2, "api_version": 2, "contracts": 2, "generate_schemas": 2, "__init__": 2,
    "chat": 2, "chat_templates": 2,
    "fsdp_schema": 2,
    # 3: data, the engine (DeepSpeed / launch settings), hardware rules, tracking
    "data": 3, "engine": 3, "hardware": 3, "tracking": 3, "defaults": 3,
    "hardware_rules": 3, "integrations": 3,
    # 4: one run lifecycle
    "build": 4, "checkpoints": 4, "outputs": 4, "report": 4, "session": 4, "stop": 4,
    "timing": 4, "wiring": 4, "outcome": 4, "batch_view": 4, "generation_eval": 4,
    "plan": 4,
    # 5: search, made of sessions; the testing helpers for plugin authors
    "search": 5, "testing": 5,
    # 6: the command line
    "cli": 6, "__main__": 6,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = ["fturun", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict:
    """``{dotted module name: path}`` of every Python file of the package."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if "metric_modules" not in p.parts}  # evaluate scripts, loaded by path


def imports_of(name: str, path: Path) -> set:
    """Every fturun module ``name`` imports, anywhere in the file (functions included)."""
    is_package = path.name == "__init__.py"
    modules = package_modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fturun")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fturun":
                continue
            # "from fturun.search import trial" names a submodule, not the package's contents
            submodules = {f"{target}.{a.name}" for a in node.names} & set(modules)
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return {t for t in found if t in modules and t != name}


def unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict:
    return {name: imports_of(name, path) for name, path in package_modules().items()}


def test_every_unit_has_a_layer():
    units = {unit(n) for n in package_modules() if unit(n) != "builtin"}
    assert units - set(LAYERS) == set(), "add the new module to LAYERS (and README 'Layout')"


def test_imports_point_down_the_layers():
    upward = []
    for name, targets in graph().items():
        if unit(name) == "builtin":
            continue
        for target in targets:
            if unit(target) == "builtin":
                upward.append(f"{name} imports the built-in plugin {target}")
            elif LAYERS[unit(target)] > LAYERS[unit(name)]:
                upward.append(f"{name} (layer {LAYERS[unit(name)]}) imports {target} "
                              f"(layer {LAYERS[unit(target)]})")
    assert upward == []


def test_nothing_imports_the_cli():
    offenders = [f"{name} imports {t}" for name, targets in graph().items()
                 if unit(name) not in ("cli", "__main__") for t in targets if unit(t) == "cli"]
    assert offenders == []


def test_builtin_plugins_import_only_the_public_api():
    offenders = [f"{name} imports {t}" for name, targets in graph().items()
                 if unit(name) == "builtin"
                 for t in targets if unit(t) != "builtin" and t != "fturun.api"]
    assert offenders == []


def test_no_import_cycle():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_module_and_function_sizes(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path}: split it by job"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{path}: functions over {MAX_FUNCTION_LINES} lines"


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: an upward import in a module is found (so a green run means
    something)."""
    fake = tmp_path / "fturun"
    (fake / "tracking").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "session.py").write_text("")
    (fake / "tracking" / "__init__.py").write_text(
        "def f():\n    from ..session import RunSession\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert imports_of("fturun.tracking", fake / "tracking" / "__init__.py") == \
        {"fturun.session"}
    with pytest.raises(AssertionError):
        test_imports_point_down_the_layers()
