"""The number rule of every recipe schema, applied in one place: the validator. An integer field
(``"type": "integer"``, or an ``enum``/``const`` of integers) takes a JSON integer, written
without a decimal point or an exponent: ``16``, never ``16.5``, ``16.0`` or ``1.6e1``. JSON
Schema itself counts ``16.0`` as an integer; Python reads it as a float, and the Trainer, torch
or a plugin's factory then fails on it far from the recipe. So fturun refuses it, at its key,
for the training arguments, the fixed sections and every component's params alike.

An integer also fits in 64 bits (what torch, numpy and the Trainer's arguments hold): a larger
one is refused at its key rather than overflowing later.

(Non-finite numbers never reach a validator: :mod:`fturun.recipe.json_text` refuses them when the
text
is read.)"""

from __future__ import annotations

import json
from functools import lru_cache

INT64_MAX = 2**63 - 1


def is_integer(value) -> bool:
    """Whether ``value`` is a JSON integer as fturun reads one: an ``int``, not a bool or a
    float."""
    return isinstance(value, int) and not isinstance(value, bool)


def integral_float(value) -> bool:
    """Whether ``value`` is a float with a whole value (``16.0``, ``1e3``): what JSON Schema
    would count as an integer and fturun does not."""
    return isinstance(value, float) and value.is_integer()


def recipe_validator(schema: dict):
    """A Draft 2020-12 validator of ``schema`` that applies the integer rule (cached)."""
    return _validator_for(json.dumps(schema, sort_keys=True))


@lru_cache(maxsize=16)
def _validator_for(schema_json: str):
    return _validator_class()(json.loads(schema_json))


@lru_cache(maxsize=1)
def _validator_class():
    from jsonschema import Draft202012Validator, validators

    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, instance: is_integer(instance))
    keywords = Draft202012Validator.VALIDATORS
    return validators.extend(
        Draft202012Validator, type_checker=checker,
        validators={"enum": _strict(keywords["enum"], lambda enum: enum),
                    "const": _strict(keywords["const"], lambda value: [value]),
                    "type": _in_range(keywords["type"])})


def _in_range(check):
    """The ``type`` keyword ``check``, refusing an integer for an integer field that does not
    fit in 64 bits."""
    from jsonschema.exceptions import ValidationError

    def in_range(validator, types, instance, schema):
        wanted = [types] if isinstance(types, str) else list(types)
        if "integer" in wanted and is_integer(instance) and abs(instance) > INT64_MAX:
            bound = "maximum" if instance > 0 else "minimum"  # worded "must be at most ..."
            yield ValidationError(f"{instance} is past the 64-bit integer range",
                                  validator=bound, validator_value=INT64_MAX if instance > 0
                                  else -INT64_MAX - 1)
            return
        yield from check(validator, types, instance, schema)

    return in_range


def _strict(check, options_of):
    """The ``enum``/``const`` keyword ``check``, refusing an integral float that only matches an
    integer option (JSON Schema counts ``2.0`` equal to ``2``)."""
    from jsonschema.exceptions import ValidationError

    def strict(validator, expected, instance, schema):
        options = options_of(expected)
        options = options if isinstance(options, list) else []
        if integral_float(instance) and \
                any(is_integer(o) and o == instance for o in options) and \
                not any(isinstance(o, float) and o == instance for o in options):
            yield ValidationError(f"{instance!r} is not an integer", validator="type",
                                  validator_value="integer")
            return
        yield from check(validator, expected, instance, schema)

    return strict
