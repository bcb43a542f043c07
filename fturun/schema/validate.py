"""Validate a recipe: every schema error and every cross-field problem at once, each located by
file, JSON path, line and column. The validator applies fturun's number rule
(:mod:`.numbers`): an integer field takes a JSON integer, never ``16.0``."""

from __future__ import annotations

from ..plugin.registry import Registry
from ..recipe.load import Recipe
from .compose import compose_schema
from .numbers import recipe_validator
from .problems import problems_from_error
from .rules import check_rules


def validate_recipe(recipe: Recipe, registry: Registry, schema: dict | None = None) -> list:
    """Every problem of ``recipe``: schema errors, then cross-field rules, in file order; empty
    when valid. ``schema`` defaults to the one composed from ``registry``."""
    schema = schema or compose_schema(registry)
    validator = recipe_validator(schema)  # integers are JSON integers (see .numbers)
    problems = []
    for error in validator.iter_errors(recipe.data):
        problems.extend(problems_from_error(recipe, error))
    problems.extend(check_rules(recipe, registry))
    unique, seen = [], set()
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return sorted(unique, key=lambda p: (p.line or 0, p.col or 0, p.path))
