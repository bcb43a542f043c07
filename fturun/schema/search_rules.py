"""The rules of a search space (``search.space`` and ``search.enqueue``): what Optuna would refuse,
or what would make every trial fail, reported before any trial starts. Each space key names a
settable recipe key, each range is ordered and fits its distribution, and the values a space
can give (its choices, its range's ends) are values that key accepts: an integer key gets an int
range or integer choices, never ``8.0`` (see :mod:`.numbers`)."""

from __future__ import annotations

import json

from ..core.suggest import suggest
from ..recipe.load import Recipe
from .keys import recipe_key_schema
from .numbers import is_integer, recipe_validator
from .problems import problems_from_error


def check_space(schema: dict, data: dict, search: dict, add) -> None:
    """Every problem of ``search``'s space and enqueued trials, reported through ``add``."""
    space = search.get("space") if isinstance(search.get("space"), dict) else {}
    entries = {k: e for k, e in space.items() if isinstance(e, dict)}
    for key, entry in space.items():
        target, message = recipe_key_schema(schema, data, key)
        if message:
            add(["search", "space", key], message)
        elif isinstance(entry, dict) and isinstance(target, dict):
            _check_values(schema, target, key, entry, add)
    for key, entry in entries.items():
        _check_range(search, key, entry, add)
    _check_enqueue(search, space, entries, add)


def _same(a, b) -> bool:
    """Equal as JSON values: ``8.0`` is not the choice ``8``, ``true`` not ``1``."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(search, key, entry, add) -> None:
    """An ordered range (above 0 on a log scale), step or log, integer ends for an int range,
    and a finite grid for the grid sampler."""
    kind, where = entry.get("type"), ["search", "space", key]
    low, high = entry.get("low"), entry.get("high")
    if kind in ("float", "int") and _number(low) and _number(high):
        if low >= high:
            add(where, f"low ({low}) must be below high ({high})")
        if entry.get("log") and low <= 0:
            add(where, "a log scale needs low > 0")
    if kind in ("float", "int") and entry.get("log") and entry.get("step") is not None:
        add(where, "step and log cannot both be set; keep one")
    if kind == "int":
        for bound in ("low", "high", "step"):
            value = entry.get(bound)
            if isinstance(value, float):
                fix = f"; write {int(value)}" if value.is_integer() else ""
                add(where + [bound], f"an int range needs an integer (written without a "
                    f"decimal point or exponent), got {value}{fix}")
    if search.get("sampler") == "grid" and kind == "float" and entry.get("step") is None:
        add(where, "the grid sampler needs a finite grid: make this space categorical, or "
            "give the float range a step")


def _integer_only(target: dict) -> bool:
    types = target.get("type")
    types = types if isinstance(types, list) else [types]
    return "integer" in types and "number" not in types


def _check_values(schema, target, key, entry, add) -> None:
    """The values the entry can give (its choices; its range's ends, as the distribution gives
    them) are accepted by the schema of recipe key ``key``."""
    kind, where = entry.get("type"), ["search", "space", key]
    if kind == "float" and _integer_only(target):
        add(where + ["type"], f"'{key}' takes integers, and a float range gives values like "
            "12.7: write \"type\": \"int\"")
        return
    if kind == "categorical" and isinstance(entry.get("choices"), list):
        values = [(["choices", i], v) for i, v in enumerate(entry["choices"])]
    elif kind in ("int", "float"):  # the ends (an int range's non-integer ends: see above)
        values = [([bound], entry[bound]) for bound in ("low", "high")
                  if _number(entry.get(bound)) and (kind == "float" or is_integer(entry[bound]))]
    else:
        return
    validator = recipe_validator(schema).evolve(schema=target)
    for at, value in values:
        for error in validator.iter_errors(value):
            for found in problems_from_error(Recipe(data={}, path=key, base_dir="."), error):
                inner = "" if found.path == "$" else f" (at {found.path[1:]})"
                add(where + at, f"{json.dumps(value)} is not a value of '{key}'{inner}: "
                    f"{found.message}")


def _check_enqueue(search, space, entries, add) -> None:
    """Each enqueued value belongs to its space entry."""
    enqueue = search.get("enqueue")
    for index, point in enumerate(enqueue if isinstance(enqueue, list) else []):
        if not isinstance(point, dict):
            continue
        for key, value in point.items():
            where = ["search", "enqueue", index, key]
            entry = entries.get(key)
            if entry is None:
                add(where, f"'{key}' is not a key of search.space{suggest(key, list(space))}")
            elif entry.get("type") == "categorical":
                if not any(_same(value, c) for c in entry.get("choices") or []):
                    add(where, f"{json.dumps(value)} is not one of the choices "
                        f"{json.dumps(entry.get('choices'))}")
            elif not _number(value):
                add(where, f"a {entry.get('type')} range needs a number, got {json.dumps(value)}")
            elif entry.get("type") == "int" and not is_integer(value):
                add(where, f"an int range needs an integer (written without a decimal point or "
                    f"exponent), got {json.dumps(value)}")
            elif _number(entry.get("low")) and _number(entry.get("high")) and \
                    not entry["low"] <= value <= entry["high"]:
                add(where, f"{value} is outside the range [{entry['low']}, {entry['high']}]")
