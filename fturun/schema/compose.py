"""Compose the recipe JSON Schema (Draft 2020-12) from the registered components, the fixed sections
and the committed ``training`` schema."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..plugin.registry import KINDS, Registry
from ..plugin.tasks import FIRST_PARTY_TASKS, install_hint
from .installed import installed_schema
from .sections import (
    COMPONENT_SECTIONS,
    DATA,
    DEEPSPEED,
    DEEPSPEED_CONFIG,
    DESCRIPTION,
    DRAFT,
    EXTENDS,
    GENERATION,
    OUTPUT,
    SCHEMA_KEY,
    SEARCH,
    SEED,
    TRACKING,
    WEIGHTED_KINDS,
    definition_ref,
)
from .task_rules import (
    task_columns_schema,
    task_property,
    task_training_conditions,
    task_training_schema,
)

#: generated from ``TrainingArguments`` (and accelerate's FSDP constants) by
#: :mod:`fturun.schema.committed` from the locked versions; the reference for editors and docs
TRAINING_SCHEMA_FILE = Path(__file__).resolve().parent / "training_arguments.schema.json"

def _generate_training_schema() -> dict:
    from .generate import training_arguments_schema

    return training_arguments_schema()


@lru_cache(maxsize=1)
def training_schema() -> dict:
    """The ``training`` section schema of the installed transformers: the committed file when
    it was generated from the installed versions, else the one generated from them (cached per
    version, :mod:`.installed`), so validation follows the library the run will use."""
    from . import fsdp as fsdp_schema
    from . import generate as generate_schemas

    return installed_schema("training", TRAINING_SCHEMA_FILE, _generate_training_schema,
                            generate_schemas.TRAINING_SCHEMA_PACKAGES,
                            generator_files=(generate_schemas.__file__, fsdp_schema.__file__))


_committed_training_schema = training_schema  # compose_schema has a parameter of that name


def component_schema(registry: Registry, kind: str, only_plugins=None) -> dict:
    """Schema of one component reference: ``"name"`` or ``{"name": ..., "params": {...}}``, with
    ``params`` checked against the named component's schema (``if name == X then ...``)."""
    components = [
        c for c in registry.components[kind].values()
        if only_plugins is None or c.plugin in only_plugins
    ]
    names = sorted(c.name for c in components)
    branches = [
        {
            "if": {"properties": {"name": {"const": c.name}}, "required": ["name"]},
            "then": {"properties": {"params": c.params_schema}},
        }
        for c in sorted(components, key=lambda c: c.name)
    ]
    return {
        "description": f"a registered {kind}: a name, or {{\"name\": ..., \"params\": {{...}}}}",
        "type": ["string", "object"],
        "if": {"type": "string"},
        "then": name_enum(registry, kind, names),
        "else": {
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", **name_enum(registry, kind, names)},
                "params": {"type": "object"},
                **({"weight": WEIGHTED_KINDS[kind]} if kind in WEIGHTED_KINDS else {}),
            },
            "allOf": branches,
        },
    }


def name_enum(registry: Registry, kind: str, names: list) -> dict:
    """The names a recipe may write for ``kind``, marked with the kind (``x-fturun-kind``) for
    the "not a registered ..." message, and with why each name of a disabled or failed plugin
    is missing (``x-fturun-unavailable``: name -> reason) when there are any."""
    schema = {"enum": names, "x-fturun-kind": kind}
    unavailable = {name: why for name, why in sorted(registry.unavailable.get(kind, {}).items())
                   if name not in names}
    if unavailable:
        schema["x-fturun-unavailable"] = unavailable
    return schema


def _task_schema(registry: Registry, only_plugins) -> dict:
    """The ``task`` key: a registered task, named in messages like a component; a first-party
    plugin's task that is not there says which distribution to install."""
    schema = task_property(registry, only_plugins)
    schema = {**schema, **name_enum(registry, "task", schema["enum"])}
    hints = {name: install_hint(name) for name in FIRST_PARTY_TASKS
             if name not in schema["enum"] and name not in schema.get("x-fturun-unavailable", {})}
    if hints:
        schema["x-fturun-unavailable"] = {**schema.get("x-fturun-unavailable", {}), **hints}
    return schema


def compose_schema(registry: Registry, training_schema: dict | None = None,
                   only_plugins=None) -> dict:
    """The full recipe schema (Draft 2020-12) for the components in ``registry`` (only those of
    ``only_plugins`` when given); ``training_schema`` defaults to the installed version's."""
    defs = {kind: component_schema(registry, kind, only_plugins) for kind in KINDS}
    training = training_schema if training_schema is not None \
        else _committed_training_schema()
    defs["training"] = task_training_schema(registry, training, only_plugins)
    defs["deepspeed_config"] = DEEPSPEED_CONFIG
    properties = {
        "$schema": SCHEMA_KEY,
        "description": DESCRIPTION,
        "extends": EXTENDS,
        "task": _task_schema(registry, only_plugins),
        "seed": SEED,
        "data": task_columns_schema(registry, DATA, only_plugins),
        "training": definition_ref("training"),
        "output": OUTPUT,
        "tracking": TRACKING,
        "deepspeed": DEEPSPEED,
        "search": SEARCH,
        "generation": GENERATION,
    }
    for section, (kind, is_list) in COMPONENT_SECTIONS.items():
        ref = definition_ref(kind)
        properties[section] = {"type": "array", "items": ref} if is_list else ref
    schema = {
        "$schema": DRAFT,
        "$id": "https://fturun.dev/schemas/recipe.schema.json",
        "title": "fturun recipe",
        "type": "object",
        "additionalProperties": False,
        "required": ["data", "model"],
        "properties": properties,
        "$defs": defs,
    }
    conditions = task_training_conditions(registry, training, only_plugins)
    if conditions:  # settings several tasks define differently: each recipe its task's
        schema["allOf"] = conditions
    return schema
