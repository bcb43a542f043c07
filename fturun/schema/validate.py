"""Validate a recipe: every schema error and every cross-field problem at once, each located by
file, JSON path, line and column."""

from __future__ import annotations

import json
from functools import lru_cache

from ..recipe import Recipe
from ..registry import Registry
from .compose import compose_schema
from .problems import problems_from_error
from .rules import check_rules


@lru_cache(maxsize=8)
def _validator_for(schema_json: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def validate_recipe(recipe: Recipe, registry: Registry, schema: dict | None = None) -> list:
    """Every problem of ``recipe``: schema errors, then cross-field rules, in file order; empty
    when valid. ``schema`` defaults to the one composed from ``registry``."""
    schema = schema or compose_schema(registry)
    validator = _validator_for(json.dumps(schema, sort_keys=True))
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
