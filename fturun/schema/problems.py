"""Located problems: a :class:`~fturun.core.errors.Problem` at a JSON path of a recipe (with its
file,
line and column), and the people-facing message for each kind of jsonschema error, with a
"did you mean" where a name is close to an allowed one."""

from __future__ import annotations

import json

from ..core.errors import Problem
from ..core.suggest import suggest
from ..recipe.load import Recipe, json_path
from .numbers import integral_float

_BOUND_WORDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
                "exclusiveMaximum": "<"}


def problem(recipe: Recipe, path, message: str, key_position: bool = False) -> Problem:
    """A problem at ``path`` of ``recipe``; ``key_position`` points at the key rather than its
    value (an unknown key), falling back to the value's location."""
    located = tuple(path) + ("<key>",) if key_position else tuple(path)
    file, line, col = recipe.locate(located)
    if line is None and key_position:
        file, line, col = recipe.locate(tuple(path))
    return Problem(file, json_path(path), message, line, col)


def problems_from_error(recipe: Recipe, error) -> list:
    """The problems one jsonschema ``ValidationError`` stands for, each worded for a person."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_keys(recipe, path, schema, error.instance)
    if validator == "enum":
        return [problem(recipe, path, _not_in_enum(schema, error.instance))]
    if validator in ("anyOf", "oneOf") and error.context:
        return _problems_of_branches(recipe, error)
    if validator == "const":
        message = f"must be {_short(error.validator_value)}, got {_short(error.instance)}"
    elif validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        message = f"expected {expected}, got {_json_type(error.instance)} {_short(error.instance)}"
        if _wants_integer(error) and integral_float(error.instance):
            message += (f"; write {_short(int(error.instance))} (an integer is written without "
                        "a decimal point or exponent)")
    elif validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        message = f"missing required key '{missing}'"
    elif validator == "pattern" and isinstance(schema.get("x-fturun-hint"), str):
        message = f"{_short(error.instance)} is not valid"  # the hint says what is
    elif validator in _BOUND_WORDS:
        message = (f"must be {_BOUND_WORDS[validator]} {error.validator_value}, got "
                   f"{_short(error.instance)}")
    else:
        message = error.message
    if isinstance(schema.get("x-fturun-hint"), str):  # how to fix it, where the schema says
        message += f"; {schema['x-fturun-hint']}"
    return [problem(recipe, path, message)]


def _problems_of_branches(recipe: Recipe, error) -> list:
    """An ``anyOf``/``oneOf`` error: every problem of the one branch whose type fits the value
    (an inline DeepSpeed config, not its file path), else the branch that says the most (a
    number in an integer's place: the integer branch)."""
    from jsonschema.exceptions import best_match

    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [subs for subs in branches.values()
               if not any(e.validator in ("type", "const", "enum") and not e.relative_path
                          for e in subs)]
    if len(fitting) == 1:
        return [p for sub in fitting[0] for p in problems_from_error(recipe, sub)]
    integer = [e for e in error.context if _wants_integer(e)]
    same_type = [e for e in error.context if e.validator != "type"]
    return problems_from_error(recipe, best_match(integer or same_type or error.context))


def _wants_integer(error) -> bool:
    """Whether ``error`` is an integer type error on a number (``16.0``, ``16.5``)."""
    expected = error.validator_value
    expected = expected if isinstance(expected, list) else [expected]
    return (error.validator == "type" and "integer" in expected and "number" not in expected
            and isinstance(error.instance, float))


def _unknown_keys(recipe, path, schema, instance) -> list:
    allowed = list(schema.get("properties", {}))
    problems = []
    for key in (k for k in instance if k not in allowed):
        hint = suggest(key, allowed)
        listing = f"; allowed: {', '.join(allowed)}" if allowed and len(allowed) <= 12 else ""
        problems.append(problem(recipe, path + [key], f"unknown key '{key}'{hint}{listing}",
                                key_position=True))
    return problems


def _not_in_enum(schema, value) -> str:
    kind = schema.get("x-fturun-kind")
    options = schema.get("enum", [])
    if kind:
        why = isinstance(value, str) and (schema.get("x-fturun-unavailable") or {}).get(value)
        if why:  # a disabled or failed plugin has it
            return f"'{value}' is not a registered {kind}: {why}"
        listing = ", ".join(options) or "none (is a plugin missing?)"
        return (f"'{value}' is not a registered {kind}{suggest(value, options)}; "
                f"registered: {listing}")
    listing = ", ".join(_short(o) for o in options)
    return (f"{_short(value)} is not one of: {listing}"
            f"{suggest(value, [o for o in options if isinstance(o, str)])}")


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", int: "integer",
            float: "number"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
