"""The generator of argument schemas: a JSON Schema of a TrainingArguments-like dataclass
(:func:`arguments_schema`: types, help, defaults, ranges), and the ``training`` section from the
installed transformers' ``TrainingArguments`` (:func:`training_arguments_schema`). The committed
files made with it are written and checked by :mod:`fturun.schema.committed`; a run with other
installed versions validates against one made here and cached (:mod:`fturun.schema.installed`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing

from .fsdp import with_fsdp_types
from .installed import installed_versions

#: the distributions the ``training`` schema is generated from (see :mod:`fturun.schema.compose`)
TRAINING_SCHEMA_PACKAGES = ("transformers", "accelerate")


# Not settable from a recipe: credentials belong in the environment (HF_TOKEN), objects cannot be
# written in JSON, and DeepSpeed has its own top-level recipe section.
EXCLUDED_FIELDS = {"hub_token", "parallelism_config", "deepspeed"}

# fturun's own training settings, beside TrainingArguments' (taken out before it is built)
FTURUN_TRAINING = {
    "effective_batch_size": {
        "type": "integer", "minimum": 1,
        "description": "with per_device_train_batch_size \"auto\": the effective batch size "
                       "(rows per device x accumulation x devices) to keep"},
}

# What the dataclass types cannot say: the ranges users get wrong.
CONSTRAINTS = {
    "per_device_train_batch_size": {
        "type": ["integer", "string"], "minimum": 1, "pattern": "^auto$",
        "x-fturun-hint": "write a whole number of 1 or more, or \"auto\" (the largest batch the "
                         "plan fits)",
        "description": "The batch size per device for training; \"auto\": the largest the plan "
                       "says fits the device (10% of its memory left free), "
                       "gradient_accumulation_steps raised to keep the effective batch size "
                       "(effective_batch_size, else the one the recipe gives)"},
    "per_device_eval_batch_size": {"minimum": 1},
    "gradient_accumulation_steps": {"minimum": 1},
    "eval_accumulation_steps": {"minimum": 1},
    "learning_rate": {"exclusiveMinimum": 0},
    "num_train_epochs": {"minimum": 0},
    "max_steps": {"minimum": -1},
    "weight_decay": {"minimum": 0},
    "warmup_steps": {"minimum": 0},
    "max_grad_norm": {"minimum": 0},
    "logging_steps": {"exclusiveMinimum": 0},
    "eval_steps": {"exclusiveMinimum": 0},
    "save_steps": {"exclusiveMinimum": 0},
    "save_total_limit": {"minimum": 1},
    "seed": {"minimum": 0},
    "data_seed": {"minimum": 0},
    "dataloader_num_workers": {"minimum": 0},
    "adam_beta1": {"minimum": 0, "exclusiveMaximum": 1},
    "adam_beta2": {"minimum": 0, "exclusiveMaximum": 1},
    "adam_epsilon": {"exclusiveMinimum": 0},
    "label_smoothing_factor": {"minimum": 0, "maximum": 1},
    "train_sampling_strategy": {
        "enum": ["random", "sequential", "group_by_length", "batch_rebalance"]
    },
}


def _type_schema(tp) -> dict:
    """JSON Schema for a dataclass field type (the subset TrainingArguments uses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        schemas = [_type_schema(arg) for arg in typing.get_args(tp)]
        return _union(schemas)
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        return {"enum": values}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "string", "enum": [m.value for m in tp]}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is dict or origin is dict:
        return {"type": "object"}
    if tp is list or origin is list:
        args = typing.get_args(tp)
        items = _type_schema(args[0]) if args else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    return {}  # unknown: accept anything the dataclass accepts


def _union(schemas) -> dict:
    """Merge union members into one schema: types joined; an enum of strings beside ``str`` keeps
    the enum (TrainingArguments accepts the string form of its enums, and only the listed ones)."""
    if any(not s for s in schemas):
        return {}
    enum_values = [v for s in schemas for v in s.get("enum", []) if "type" in s or True]
    type_names = []
    for s in schemas:
        if "enum" in s and "type" not in s:  # Literal[...]
            for v in s["enum"]:
                name = {bool: "boolean", str: "string", int: "integer"}.get(type(v), "null")
                type_names.append(name)
        elif "type" in s:
            type_names.append(s["type"])
    merged = {}
    unique = sorted(set(type_names), key=type_names.index)
    merged["type"] = unique[0] if len(unique) == 1 else unique
    string_enums = [s for s in schemas if s.get("type") == "string" and "enum" in s]
    if string_enums:
        # an Enum|str field: only the enum's values are meaningful strings
        allowed = string_enums[0]["enum"]
        if "null" in unique:
            allowed = allowed + [None]
        merged["enum"] = allowed
        merged["type"] = [t for t in unique if t in ("string", "null")] or "string"
        if len(merged["type"]) == 1:
            merged["type"] = merged["type"][0]
    elif enum_values and all(isinstance(v, bool) for v in enum_values):
        pass  # Literal[False] merged into a boolean type
    items = [s.get("items") for s in schemas if s.get("type") == "array" and s.get("items")]
    if items:
        merged["items"] = items[0]
    return merged


def arguments_schema(cls, base=None, constraints=None) -> dict:
    """JSON Schema ``properties`` of the init fields of the TrainingArguments dataclass ``cls``
    (types, ``help`` as description, JSON defaults, ``constraints`` per field); with ``base``
    (a dataclass such as ``TrainingArguments``), only the fields ``cls`` adds to it. What the
    committed ``training`` schema is made of; a plugin task generates its
    ``Task.training_settings`` with it (:func:`fturun.api.arguments_schema`)."""
    inherited = {f.name for f in dataclasses.fields(base)} if base is not None else set()
    hints = typing.get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_") or f.name in EXCLUDED_FIELDS \
                or f.name in inherited:
            continue
        prop = _type_schema(hints.get(f.name, f.type))
        help_text = (f.metadata or {}).get("help")
        if help_text:
            prop["description"] = " ".join(str(help_text).split())
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if default is not dataclasses.MISSING:
            if isinstance(default, enum.Enum):
                default = default.value
            try:
                json.dumps(default)
                prop["default"] = default
            except (TypeError, ValueError):
                pass
        prop.update((constraints or {}).get(f.name, {}))
        properties[f.name] = prop
    return properties


def training_arguments_class():
    """The installed transformers' ``TrainingArguments`` class (imports transformers)."""
    from transformers import TrainingArguments

    return TrainingArguments


def training_arguments_schema() -> dict:
    """Build the ``training`` section schema from the installed ``TrainingArguments``."""
    import transformers

    TrainingArguments = training_arguments_class()  # noqa: N806 (the class, by its name)

    return {
        "title": "training",
        "description": "TrainingArguments of transformers "
        f"{transformers.__version__} (output_dir defaults to outputs/<recipe name>)",
        "type": "object",
        "additionalProperties": False,
        "properties": {**with_fsdp_types(arguments_schema(TrainingArguments,
                                                          constraints=CONSTRAINTS)),
                       **FTURUN_TRAINING},
        "x-transformers-version": transformers.__version__,
        "x-generated-from": installed_versions(TRAINING_SCHEMA_PACKAGES),
    }
