"""Read a recipe: strict JSON with line:col errors (:mod:`fturun.recipe.json_text`), ``extends``
(deep-merged base recipes) and ``a.b.c=value`` overrides from the command line. Validation is
:mod:`fturun.schema`'s job; this module only makes one JSON object out of files and overrides
and remembers where each value came from."""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field

from ..core.errors import Problem, RecipeError
from .json_text import JsonTextError, parse_json

MAX_RECIPE_BYTES = 5 * 1024 * 1024


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
    data, origins, files = _load_with_bases(os.fspath(path))
    recipe = Recipe(data=data, path=os.fspath(path), overrides=list(overrides),
                    origins=origins, files=files)
    problems = []
    for override in overrides:
        try:
            apply_override(recipe, override)
        except OverrideError as exc:
            problems.extend(Problem(f"override '{override}'", json_path(path), message)
                            for path, message in exc.problems)
        except ValueError as exc:
            problems.append(Problem(f"override '{override}'", "", str(exc)))
    if problems:
        raise RecipeError(problems)
    return recipe


def read_json_file(path: str):
    """Parse one JSON file strictly (see :mod:`fturun.recipe.json_text`); return ``(value,
    positions)``,
    ``positions`` mapping each JSON path to its ``(line, col)``. Raise :class:`RecipeError` for
    any problem reading or parsing it, each located as ``FILE:LINE:COL`` and JSON path."""
    text = _read_text(path)
    if not text.strip():
        raise RecipeError([Problem(path, "", "file is empty; a recipe is a JSON object, "
                                   "e.g. {\"model\": ...}")])
    try:
        return parse_json(text)
    except JsonTextError as exc:
        raise RecipeError([
            Problem(path, json_path(issue.path) if issue.path is not None else "",
                    issue.message, issue.line, issue.col)
            for issue in exc.issues]) from None


def _read_text(path: str) -> str:
    """The UTF-8 text of the file at ``path`` (a BOM dropped), refused when missing, a folder,
    over :data:`MAX_RECIPE_BYTES` or not UTF-8."""
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
            return f.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecipeError([Problem(path, "", f"not UTF-8 text ({exc.reason} at byte "
                                   f"{exc.start}); save the recipe as UTF-8")]) from None
    except OSError as exc:
        raise RecipeError([Problem(path, "", f"cannot read: {exc.strerror}")]) from None


def _load_with_bases(path: str):
    """The recipe at ``path`` with its ``extends`` chain merged under it: ``(data, origins,
    files)``. Iterative: a chain of any length is read without recursion (each file at most
    once: a cycle is refused)."""
    chain, seen = [], []
    while True:
        real = os.path.realpath(path)
        if real in seen:
            cycle = " -> ".join(seen[seen.index(real):] + [real])
            last, _, last_origins = chain[-1]  # the file whose 'extends' closes the cycle
            _, line, col = last_origins.get(("extends",), (last, None, None))
            raise RecipeError([Problem(last, "$.extends", f"'extends' cycle: {cycle}; remove "
                                       "one of the 'extends' keys", line, col)])
        seen.append(real)
        value, origins = _read_recipe_file(path)
        chain.append((path, value, origins))
        base_path = _base_path(path, value, origins)
        if base_path is None:
            break
        path = base_path
    _, data, origins = chain[-1]
    for _, value, child_origins in reversed(chain[:-1]):
        data = deep_merge(data, {k: v for k, v in value.items() if k != "extends"})
        # only the top file's own 'extends' stays located
        origins = {p: o for p, o in origins.items() if not (p and p[0] == "extends")}
        origins.update(child_origins)
    return data, origins, [p for p, _, _ in chain]


def _read_recipe_file(path: str):
    """``(object, origins)`` of one recipe file; refused unless it holds a JSON object."""
    value, positions = read_json_file(path)
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("dict", "object").replace("list", "array")
        raise RecipeError([Problem(path, "$", f"a recipe must be a JSON object ({{...}}), "
                                   f"not a JSON {kind}", 1, 1)])
    return value, {p: (path, line, col) for p, (line, col) in positions.items()}


def _base_path(path: str, value: dict, origins: dict):
    """The file that ``value``'s ``extends`` names (relative to ``path``), or None."""
    base_ref = value.get("extends")
    if base_ref is None:
        return None
    _, line, col = origins.get(("extends",), (path, None, None))
    if not isinstance(base_ref, str):
        raise RecipeError([Problem(path, "$.extends", "'extends' must be a path (a string) "
                                   "relative to this recipe", line, col)])
    base_path = os.path.join(os.path.dirname(path), base_ref)
    if not os.path.isfile(base_path):
        raise RecipeError([Problem(path, "$.extends", f"base recipe '{base_ref}' not found "
                                   f"(looked for {base_path}; the path is relative to this "
                                   "recipe)", line, col)])
    return base_path


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
        value, _ = parse_json(raw)
    except JsonTextError as exc:
        refused = [i for i in exc.issues if i.kind in ("number", "duplicate")]
        if not refused:  # not JSON (NaN and Infinity included): the text itself
            return parts, raw
        raise OverrideError(refused, parts, raw) from None
    return parts, value


class OverrideError(ValueError):
    """An override whose value is JSON that fturun refuses (a number without a double, a key
    written twice). ``problems``: ``(JSON path, message)`` of each, at the key the override
    sets and, within an object or list value, where in the value."""

    def __init__(self, issues, parts, raw: str):
        key = [int(p) if p.isdigit() else p for p in parts]
        self.problems = []
        for issue in issues:
            where = ""
            if raw.strip()[:1] in ("[", "{"):
                where = (f" (at line {issue.line}, col {issue.col} of the value)" if "\n" in raw
                         else f" (at col {issue.col} of the value)")
            self.problems.append((key + list(issue.path or ()), issue.message + where))
        super().__init__("; ".join(message for _, message in self.problems))


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
            # a key the override creates is the override's, not the file's (a typo in it is
            # reported at the override)
            recipe.origins[tuple(path) + (key,)] = (f"override '{text}'", None, None)
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
