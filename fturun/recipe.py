"""Read a recipe: JSON with line:col errors, ``extends`` (deep-merged base recipes) and
``a.b.c=value`` overrides from the command line. Validation is :mod:`fturun.schema`'s job; this
module only makes one JSON object out of files and overrides and remembers where each value came
from."""

from __future__ import annotations

import bisect
import copy
import json
import os
import re
from dataclasses import dataclass, field
from json.decoder import scanstring

from .errors import Problem, RecipeError

MAX_RECIPE_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64


@dataclass
class Recipe:
    """A recipe as one JSON object, with the origin (file, line, col) of each value."""

    data: dict
    path: str
    overrides: list = field(default_factory=list)
    # JSON path tuple -> (file, line or None, col or None)
    origins: dict = field(default_factory=dict)
    files: list = field(default_factory=list)  # every file read: the recipe and its bases
    base_dir: str = ""  # relative data/model paths are looked up here (default: the file's folder)

    def __post_init__(self):
        if not self.base_dir:
            self.base_dir = os.path.dirname(os.path.abspath(self.path))

    def locate(self, path: tuple):
        """``(file, line, col)`` for a JSON path, or of its closest located ancestor."""
        path = tuple(path)
        while True:
            if path in self.origins:
                return self.origins[path]
            if not path:
                return (self.path, None, None)
            path = path[:-1]


def load_recipe(path: str, overrides=()) -> Recipe:
    """Read ``path`` (following ``extends``) and apply ``KEY=VALUE`` overrides.

    Raises :class:`RecipeError` listing every problem found.
    """
    data, origins, files = _load_with_bases(os.fspath(path), chain=())
    recipe = Recipe(data=data, path=os.fspath(path), overrides=list(overrides),
                    origins=origins, files=files)
    problems = []
    for override in overrides:
        try:
            apply_override(recipe, override)
        except ValueError as exc:
            problems.append(Problem(f"override '{override}'", "", str(exc)))
    if problems:
        raise RecipeError(problems)
    return recipe


def read_json_file(path: str):
    """Parse one JSON file; return ``(value, text)``. Raise :class:`RecipeError` for any problem
    reading or parsing it, located as ``FILE:LINE:COL`` where possible."""
    if not os.path.exists(path):
        raise RecipeError([Problem(path, "", "no such file; check the path (it is relative "
                                   "to the current directory)")])
    if os.path.isdir(path):
        raise RecipeError([Problem(path, "", "is a directory, not a recipe file; name a .json "
                                   "file inside it")])
    size = os.path.getsize(path)
    if size > MAX_RECIPE_BYTES:
        raise RecipeError([Problem(path, "", f"file is {size / 2**20:.1f} MiB; a recipe may be "
                                   f"at most {MAX_RECIPE_BYTES // 2**20} MiB (keep data in files "
                                   "that the recipe names)")])
    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecipeError([Problem(path, "", f"not UTF-8 text ({exc.reason} at byte "
                                   f"{exc.start}); save the recipe as UTF-8")]) from None
    except OSError as exc:
        raise RecipeError([Problem(path, "", f"cannot read: {exc.strerror}")]) from None
    if not text.strip():
        raise RecipeError([Problem(path, "", "file is empty; a recipe is a JSON object, "
                                   "e.g. {\"model\": ...}")])
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RecipeError([Problem(path, "", f"invalid JSON: {_explain(exc)}", exc.lineno,
                                   exc.colno)]) from None
    except ValueError as exc:  # NaN / Infinity
        raise RecipeError([Problem(path, "", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        raise RecipeError([Problem(path, "", f"JSON nested too deeply (a recipe may nest at "
                                   f"most {MAX_DEPTH} levels)")]) from None
    if _depth(value) > MAX_DEPTH:
        raise RecipeError([Problem(path, "", f"JSON nested too deeply (a recipe may nest at "
                                   f"most {MAX_DEPTH} levels)")])
    return value, text


def _explain(exc: json.JSONDecodeError) -> str:
    """json's message, with the usual cause spelled out (a trailing comma, single quotes)."""
    before = exc.doc[: exc.pos].rstrip()
    here = exc.doc[exc.pos: exc.pos + 1]
    if before.endswith(",") and here in ("}", "]"):
        return f"trailing comma before '{here}'; remove the comma"
    if here == "'":
        return f"{exc.msg}; JSON strings and keys use double quotes"
    return exc.msg


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON; write a number or a string")


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _load_with_bases(path: str, chain: tuple):
    real = os.path.realpath(path)
    if real in chain:
        cycle = " -> ".join(list(chain[chain.index(real):]) + [real])
        raise RecipeError([Problem(path, "$.extends", f"'extends' cycle: {cycle}; remove "
                                   "one of the 'extends' keys")])
    value, text = read_json_file(path)
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("dict", "object").replace("list", "array")
        raise RecipeError([Problem(path, "$", f"a recipe must be a JSON object ({{...}}), "
                                   f"not a JSON {kind}", 1, 1)])
    origins = {p: (path, line, col) for p, (line, col) in source_map(text).items()}
    files = [path]
    base_ref = value.get("extends")
    if base_ref is None:
        return value, origins, files
    if not isinstance(base_ref, str):
        line, col = origins.get(("extends",), (path, None, None))[1:]
        raise RecipeError([Problem(path, "$.extends", "'extends' must be a path (a string) "
                                   "relative to this recipe", line, col)])
    base_path = os.path.join(os.path.dirname(path), base_ref)
    if not os.path.isfile(base_path):
        _, line, col = origins.get(("extends",), (path, None, None))
        raise RecipeError([Problem(path, "$.extends", f"base recipe '{base_ref}' not found "
                                   f"(looked for {base_path}; the path is relative to this "
                                   "recipe)", line, col)])
    base, base_origins, base_files = _load_with_bases(base_path, chain + (real,))
    child = {k: v for k, v in value.items() if k != "extends"}
    merged = deep_merge(base, child)
    merged_origins = dict(base_origins)
    for p in list(merged_origins):
        if p and p[0] == "extends":
            del merged_origins[p]
    merged_origins.update(origins)
    return merged, merged_origins, files + base_files


def deep_merge(base, override):
    """Objects merge key by key (recursively); anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


_OVERRIDE = re.compile(r"^([A-Za-z0-9_\-$][A-Za-z0-9_\-.$]*)=(.*)$", re.S)


def parse_override(text: str):
    """Split ``a.b.0.c=value`` into ``(["a", "b", "0", "c"], value)``; the value is parsed as JSON,
    else kept as a string."""
    match = _OVERRIDE.match(text)
    if not match:
        raise ValueError("an override is KEY=VALUE with a dotted KEY, e.g. "
                         "training.learning_rate=3e-5 or callbacks.0.params.patience=2")
    key, raw = match.groups()
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"key '{key}' has an empty segment; write a.b.c")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        value = raw
    return parts, value


def apply_override(recipe: Recipe, text: str) -> None:
    """Set one ``KEY=VALUE`` in ``recipe.data``. A bare component name on the way is expanded to
    ``{"name": ...}`` so ``callbacks.0.params.patience=2`` works on ``"early_stopping"``."""
    parts, value = parse_override(text)
    node = recipe.data
    path = []
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            index = _list_index(node, part, path)
            child = node[index]
            key = index
        elif isinstance(node, dict):
            child = node.get(part)
            key = part
        else:
            raise ValueError(f"'{_dotted(path)}' is {_kind(node)}, not an object; "
                             f"cannot set '{part}' inside it")
        if child is None:
            if nxt.isdigit():
                raise ValueError(f"'{_dotted(path + [key])}' is not set, so it has no item "
                                 f"{nxt}; set the whole list, e.g. {_dotted(path + [key])}="
                                 "'[...]'")
            child = {}
            node[key] = child
        elif isinstance(child, str) and nxt in ("params", "name"):
            child = {"name": child}
            node[key] = child
        node = child
        path.append(key)
    last = parts[-1]
    if isinstance(node, list):
        if last.isdigit() and int(last) == len(node):
            node.append(value)
            key = len(node) - 1
        else:
            key = _list_index(node, last, path)
            node[key] = value
    elif isinstance(node, dict):
        key = last
        node[key] = value
    else:
        raise ValueError(f"'{_dotted(path)}' is {_kind(node)}, not an object; "
                         f"cannot set '{last}' inside it")
    full = tuple(path) + (key,)
    for p in [p for p in recipe.origins if p[: len(full)] == full]:
        del recipe.origins[p]
    recipe.origins[full] = (f"override '{text}'", None, None)


def _list_index(node: list, part: str, path) -> int:
    if not part.isdigit():
        raise ValueError(f"'{_dotted(path)}' is a list; use an index (0..{len(node) - 1}), "
                         f"not '{part}'")
    index = int(part)
    if index >= len(node):
        raise ValueError(f"'{_dotted(path)}' has {len(node)} item(s); index {index} is out of "
                         "range")
    return index


def _kind(value) -> str:
    return f"the {type(value).__name__.replace('str', 'string')} {json.dumps(value)[:40]}"


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def json_path(path) -> str:
    """``("a", 0, "b")`` -> ``$.a[0].b``; keys that are not identifiers are quoted."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.match(r"^[A-Za-z_$][A-Za-z0-9_\-$]*$", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def source_map(text: str) -> dict:
    """Map each JSON path (a tuple of keys and indexes) of valid JSON ``text`` to the 1-based
    ``(line, col)`` where its value starts; an object key's own position is stored under
    ``path + ("<key>",)``. Iterative, so deep nesting cannot overflow the stack."""
    return _SourceScanner(text).scan()


class _SourceScanner:
    """The state of :func:`source_map`: a stack of open containers
    ``[kind, path, next_index]`` and the path of the value expected next."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.positions = {}
        self.stack = []

    def position(self, offset: int) -> tuple:
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return line + 1, offset - self.line_starts[line] + 1

    def skip_ws(self, i: int) -> int:
        return _WS.match(self.text, i).end()

    def key(self, i: int, parent: tuple) -> tuple:
        """Record the key starting at ``i``: ``(the offset after ':', its value's path)``."""
        key, j = scanstring(self.text, i + 1)
        self.positions[parent + (key, "<key>")] = self.position(i)
        return self.skip_ws(j) + 1, parent + (key,)

    def scan(self) -> dict:
        text = self.text
        i = self.skip_ws(1 if text.startswith("\ufeff") else 0)
        path, expecting_value = (), True
        while True:
            i = self.skip_ws(i)
            if i >= len(text):
                break
            if expecting_value:
                i, path, expecting_value = self.value(i, path)
            elif not self.stack:
                break
            else:
                i, path, expecting_value = self.after_value(i)
        return self.positions

    def value(self, i: int, path: tuple) -> tuple:
        """At the start of a value: ``(next offset, next path, expecting a value)``."""
        text, ch = self.text, self.text[i]
        self.positions[path] = self.position(i)
        if ch in "{[":
            self.stack.append(["object" if ch == "{" else "array", path, 0])
            i = self.skip_ws(i + 1)
            if text[i] in "}]":  # empty
                self.stack.pop()
                return i + 1, path, False
            if ch == "{":
                return (*self.key(i, path), True)
            return i, path + (0,), True
        if ch == '"':
            _, i = scanstring(text, i + 1)
        elif ch in "tfn":
            i += 4 if text.startswith(("true", "null"), i) else 5
        else:
            i = _NUMBER.match(text, i).end()
        return i, path, False

    def after_value(self, i: int) -> tuple:
        """After a value: a ``,`` or the closing bracket of the innermost container."""
        top = self.stack[-1]
        if self.text[i] == ",":
            i = self.skip_ws(i + 1)
            if top[0] == "object":
                return (*self.key(i, top[1]), True)
            top[2] += 1
            return i, top[1] + (top[2],), True
        self.stack.pop()
        return i + 1, top[1], False
