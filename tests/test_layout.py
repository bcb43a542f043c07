"""The house rules of the package, checked on its source: imports point down the layers only (in
functions too), no import cycle, nothing imports the CLI, built-in plugins import only the public
plugin API, and no module or function grows past its size limit. See README "Layout"."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fturun"

#: how a unit (a sub-package or a top-level module) states its layer: in the first line of its
#: docstring, e.g. ``"""core (layer 0): ..."""``. Written once there; this test reads it and
#: docs/layout.md renders it (``python dev/docs_reference.py``).
LAYER_PATTERN = re.compile(r"\(layer (\d)\)")


def unit_files() -> dict:
    """``{unit: its docstring's file}``: each sub-package's ``__init__.py`` and each top-level
    module (the built-in plugins are no layer: they import only fturun.api)."""
    units = {}
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists() and path.name != "builtin":
            units[path.name] = path / "__init__.py"
        elif path.suffix == ".py":
            units[path.stem] = path
    return units


def declared_layers() -> dict:
    """``{unit: layer}`` as each unit's docstring states it (units that state none are left
    out: :func:`test_every_unit_states_its_layer` names them)."""
    layers = {}
    for name, path in unit_files().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        match = LAYER_PATTERN.search(doc.split("\n", 1)[0])
        if match:
            layers[name] = int(match.group(1))
    return layers


LAYERS = declared_layers()
MAX_FUNCTION_LINES = 60
#: modules are kept under 300 lines by splitting them by job; these are over it, each for its
#: stated reason (a declarative table, one cohesive contract), and never over 400
MAX_MODULE_LINES = 300
LONGER_MODULES = {
    "schema/sections.py": "declarative: the fixed sections' JSON Schemas, one table each",
    "plugin/tasks.py": "the Task record: one documented contract (its fields are the plugin API)",
    "run/session.py": "the one run lifecycle, its steps in order (run, check, trial share it)",
    "tracking/tracker.py": "one MLflow run's lifecycle with its outage handling",
    "tracking/model.py": "the run's MLflow Model: one flavour's signature, example and card",
    "run/checkpoints.py": "what a resume and a fresh start may do with a folder: one policy",
    "builtin/datasets.py": "the dataset components: one plugin module per kind (the house rule)",
    "hookspecs.py": "every hook with its contract, documented once: what a plugin author reads",
    "builtin/models.py": "the model components: one plugin module per kind (the house rule)",
}
HARD_MAX_MODULE_LINES = 400


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


def test_every_unit_states_its_layer():
    missing = sorted(set(unit_files()) - set(LAYERS))
    assert missing == [], ("state the layer in the first docstring line of these units, "
                           f"e.g. \"name (layer 3): its job\": {missing}")


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
    limit = MAX_MODULE_LINES
    if path.relative_to(PACKAGE).as_posix() in LONGER_MODULES:
        limit = HARD_MAX_MODULE_LINES
    assert len(text.splitlines()) <= limit, f"{path}: split it by job"
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
    (fake / "run").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "run" / "__init__.py").write_text("")
    (fake / "run" / "session.py").write_text("")
    (fake / "tracking" / "__init__.py").write_text(
        "def f():\n    from ..run.session import RunSession\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert imports_of("fturun.tracking", fake / "tracking" / "__init__.py") == \
        {"fturun.run.session"}
    with pytest.raises(AssertionError):
        test_imports_point_down_the_layers()
