"""Compose the recipe JSON Schema from the registered components, and validate a recipe against it,
collecting every problem at once (each with its file, JSON path, line and column)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .errors import Problem
from .recipe import Recipe, json_path
from .registry import KINDS, Registry, suggest

DRAFT = "https://json-schema.org/draft/2020-12/schema"
TRAINING_SCHEMA_FILE = Path(__file__).resolve().parent / "training_arguments.schema.json"

TASKS = ["sequence-classification", "token-classification", "masked-lm", "causal-lm", "seq2seq"]

# recipe section -> (component kind, is a list)
COMPONENT_SECTIONS = {
    "model": ("model", False),
    "adapter": ("adapter", False),
    "collator": ("collator", False),
    "loss": ("loss", False),
    "metrics": ("metric", True),
    "callbacks": ("callback", True),
    "optimizer": ("optimizer", False),
    "scheduler": ("scheduler", False),
}

_SPLIT_SIZE = {
    "description": "a fraction of the source (0 < x < 1) or a number of rows (>= 1)",
    "type": "number",
    "exclusiveMinimum": 0,
}


@lru_cache(maxsize=1)
def training_schema() -> dict:
    """The committed ``training`` section schema (generated from ``TrainingArguments``)."""
    return json.loads(TRAINING_SCHEMA_FILE.read_text())


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
        "then": {"enum": names, "x-fturun-kind": kind},
        "else": {
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "enum": names, "x-fturun-kind": kind},
                "params": {"type": "object"},
            },
            "allOf": branches,
        },
    }


def compose_schema(registry: Registry, training_schema: dict | None = None,
                   only_plugins=None) -> dict:
    """The full recipe schema (Draft 2020-12) for the components in ``registry``."""
    defs = {kind: component_schema(registry, kind, only_plugins) for kind in KINDS}
    defs["training"] = training_schema if training_schema is not None else globals()[
        "training_schema"]()
    ref = lambda kind: {"$ref": f"#/$defs/{kind}"}  # noqa: E731
    properties = {
        "$schema": {"type": "string", "description": "path or URL of this schema, for editors"},
        "description": {"type": "string", "description": "what this recipe is for"},
        "extends": {"type": "string",
                    "description": "a base recipe (path relative to this file) deep-merged under "
                                   "this one"},
        "task": {"enum": TASKS, "default": "sequence-classification",
                 "description": "what the model learns; selects the model class, preprocessing, "
                                "default collator and metrics"},
        "seed": {"type": "integer", "minimum": 0, "default": 42,
                 "description": "seed for data splits, sampling and model initialisation"},
        "data": {
            "type": "object",
            "additionalProperties": False,
            "required": ["train"],
            "properties": {
                "train": ref("dataset"),
                "eval": ref("dataset"),
                "test": ref("dataset"),
                "split": {
                    "type": "object",
                    "description": "carve eval/test splits out of the train source",
                    "additionalProperties": False,
                    "properties": {
                        "eval": _SPLIT_SIZE,
                        "test": _SPLIT_SIZE,
                        "stratify": {"type": "boolean", "default": False,
                                     "description": "keep label proportions in each split"},
                    },
                },
                "columns": {
                    "type": "object",
                    "description": "which source columns hold the inputs and the label",
                    "additionalProperties": False,
                    "properties": {
                        "text": {"type": "string", "default": "text"},
                        "text_pair": {"type": "string"},
                        "label": {"type": "string", "default": "label"},
                        "target": {"type": "string", "description": "seq2seq target text"},
                    },
                },
                "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                           "uniqueItems": True,
                           "description": "label names in id order (default: sorted names "
                                          "found in the train data)"},
                "max_length": {"type": "integer", "minimum": 1, "default": 128,
                               "description": "tokens per example after truncation"},
                "padding": {"enum": ["longest", "max_length"], "default": "longest",
                            "description": "'longest' pads each batch to its longest example "
                                           "(fast); 'max_length' pads every example to "
                                           "max_length"},
                "max_train_samples": {"type": "integer", "minimum": 1},
                "max_eval_samples": {"type": "integer", "minimum": 1},
                "max_test_samples": {"type": "integer", "minimum": 1},
            },
        },
        "training": ref("training"),
        "output": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "save_model": {"type": "boolean", "default": True,
                               "description": "save the final model and tokenizer"},
                "merge_adapter": {"type": "boolean", "default": False,
                                  "description": "also save the adapter merged into the base "
                                                 "model (LoRA)"},
            },
        },
        "tracking": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "tracking_uri": {"type": "string",
                                 "description": "default: $MLFLOW_TRACKING_URI, else "
                                                "sqlite:///mlflow.db in the working directory"},
                "experiment": {"type": "string", "minLength": 1},
                "run_name": {"type": "string", "minLength": 1},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "log_model": {"type": "boolean", "default": True},
                "registered_model_name": {"type": "string", "minLength": 1},
            },
        },
    }
    for section, (kind, is_list) in COMPONENT_SECTIONS.items():
        properties[section] = {"type": "array", "items": ref(kind)} if is_list else ref(kind)
    return {
        "$schema": DRAFT,
        "$id": "https://fturun.dev/schemas/recipe.schema.json",
        "title": "fturun recipe",
        "type": "object",
        "additionalProperties": False,
        "required": ["data", "model"],
        "properties": properties,
        "$defs": defs,
    }


@lru_cache(maxsize=8)
def _validator_for(schema_json: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def validate_recipe(recipe: Recipe, registry: Registry, schema: dict | None = None) -> list:
    """Every problem of ``recipe``: schema errors, then cross-field rules. Empty when valid."""
    schema = schema or compose_schema(registry)
    validator = _validator_for(json.dumps(schema, sort_keys=True))
    problems = []
    for error in validator.iter_errors(recipe.data):
        problems.extend(_problems_from_error(recipe, error))
    problems.extend(check_rules(recipe, registry))
    unique, seen = [], set()
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return sorted(unique, key=lambda p: (p.line or 0, p.col or 0, p.path))


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


def _problem(recipe: Recipe, path, message, key_position=False) -> Problem:
    located = tuple(path) + ("<key>",) if key_position else tuple(path)
    file, line, col = recipe.locate(located)
    if line is None and key_position:
        file, line, col = recipe.locate(tuple(path))
    return Problem(file, json_path(path), message, line, col)


def _problems_from_error(recipe: Recipe, error) -> list:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed]
        problems = []
        for key in extras:
            hint = suggest(key, allowed)
            listing = f"; allowed: {', '.join(allowed)}" if allowed and len(allowed) <= 12 else ""
            problems.append(_problem(recipe, path + [key], f"unknown key '{key}'{hint}{listing}",
                                     key_position=True))
        return problems
    if validator == "enum":
        kind = schema.get("x-fturun-kind")
        options = schema.get("enum", [])
        if kind:
            listing = ", ".join(options) or "none (is a plugin missing?)"
            return [_problem(recipe, path, f"'{error.instance}' is not a registered {kind}"
                             f"{suggest(error.instance, options)}; registered: {listing}")]
        listing = ", ".join(_short(o) for o in options)
        return [_problem(recipe, path, f"{_short(error.instance)} is not one of: {listing}"
                         f"{suggest(error.instance, [o for o in options if isinstance(o, str)])}")]
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [_problem(recipe, path, f"expected {expected}, got {_json_type(error.instance)} "
                         f"{_short(error.instance)}")]
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [_problem(recipe, path, f"missing required key '{missing}'")]
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
                 "exclusiveMaximum": "<"}
        return [_problem(recipe, path, f"must be {words[validator]} {error.validator_value}, "
                         f"got {_short(error.instance)}")]
    return [_problem(recipe, path, error.message)]


def _get(data, *keys, default=None):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _component_name(ref):
    if isinstance(ref, str):
        return ref
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        return ref["name"]
    return None


def check_rules(recipe: Recipe, registry: Registry) -> list:
    """Cross-field rules that a schema cannot say well. Tolerates malformed input: the schema
    errors already report that, so each rule looks only at well-typed values."""
    data = recipe.data
    problems = []
    add = lambda path, msg: problems.append(_problem(recipe, path, msg))  # noqa: E731

    # a bare name is only enough for a component without required params
    for section, (kind, is_list) in COMPONENT_SECTIONS.items():
        refs = data.get(section)
        items = list(enumerate(refs)) if is_list and isinstance(refs, list) else [(None, refs)]
        for index, ref in items:
            _check_bare_name(registry, kind, ref, [section] + ([index] if is_list else []), add)
    data_section = data.get("data") if isinstance(data.get("data"), dict) else {}
    for split in ("train", "eval", "test"):
        _check_bare_name(registry, "dataset", data_section.get(split), ["data", split], add)

    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    eval_strategy = training.get("eval_strategy", "no")
    save_strategy = training.get("save_strategy", "steps")
    split = data_section.get("split") if isinstance(data_section.get("split"), dict) else {}
    has_eval = "eval" in data_section or "eval" in split
    if "eval" in data_section and "eval" in split:
        add(["data", "split", "eval"], "both data.eval and data.split.eval are set; keep one "
            "(a separate eval source, or a split of the train source)")
    sizes = [split.get(k) for k in ("eval", "test")]
    fractions = [s for s in sizes if isinstance(s, (int, float)) and not isinstance(s, bool)
                 and s < 1]
    if sum(fractions) >= 1:
        add(["data", "split"], "eval and test fractions add up to 1 or more; leave some "
            "data to train on")
    if training.get("load_best_model_at_end") is True:
        if eval_strategy == "no":
            add(["training", "load_best_model_at_end"], "needs evaluation: set "
                "training.eval_strategy to 'epoch' or 'steps' (and the same save_strategy)")
        elif save_strategy != "best" and eval_strategy != save_strategy:
            add(["training", "save_strategy"], f"load_best_model_at_end needs save_strategy to "
                f"match eval_strategy ('{eval_strategy}'), got '{save_strategy}'")
        elif eval_strategy == "steps" and save_strategy == "steps":
            eval_steps = training.get("eval_steps") or training.get("logging_steps", 500)
            save_steps = training.get("save_steps", 500)
            if (isinstance(eval_steps, (int, float)) and isinstance(save_steps, (int, float))
                    and eval_steps > 0 and save_steps % eval_steps != 0):
                add(["training", "save_steps"], f"load_best_model_at_end needs save_steps "
                    f"({save_steps}) to be a multiple of eval_steps ({eval_steps})")
    if (eval_strategy in ("steps", "epoch") or training.get("load_best_model_at_end") is True) \
            and not has_eval:
        add(["training", "eval_strategy"], f"eval_strategy '{eval_strategy}' needs eval data: "
            "add data.eval (a dataset) or data.split.eval (e.g. 0.2)")
    metric = training.get("metric_for_best_model")
    if isinstance(metric, str):
        computed = ["loss"] + computed_metric_names(data)
        bare = metric[len("eval_"):] if metric.startswith("eval_") else metric
        if not any(bare == m or bare.startswith(m + "_") for m in computed):
            add(["training", "metric_for_best_model"], f"'{metric}' is not a metric this recipe "
                f"computes{suggest(bare, computed)}; computed: {', '.join(computed)} (add it to "
                "'metrics')")
    callbacks = data.get("callbacks") if isinstance(data.get("callbacks"), list) else []
    for index, ref in enumerate(callbacks):
        if _component_name(ref) == "early_stopping" and not (
                training.get("load_best_model_at_end") is True
                and isinstance(metric, str)):
            add(["callbacks", index], "early_stopping needs training.load_best_model_at_end="
                "true and training.metric_for_best_model (the metric it watches)")
    for section, key in (("optimizer", "optim"), ("scheduler", "lr_scheduler_type")):
        if data.get(section) is not None and key in training:
            add(["training", key], f"set both here and in '{section}'; keep one (the "
                f"'{section}' component can take params)")
    return problems


def computed_metric_names(data: dict) -> list:
    """Names of the metrics a recipe computes (the keys its metric functions return)."""
    names = []
    metrics = data.get("metrics")
    if isinstance(metrics, list):
        names = [n for n in (_component_name(m) for m in metrics) if n]
    task = data.get("task")
    if task in ("masked-lm", "causal-lm"):
        names.append("perplexity")
    return names


def _check_bare_name(registry, kind, ref, path, add) -> None:
    if not isinstance(ref, str):
        return
    component = registry.components[kind].get(ref)
    if component is None:
        return
    required = component.params_schema.get("required") or []
    if required:
        example = ", ".join(f'"{r}": ...' for r in required)
        add(path, f"{kind} '{ref}' needs params {', '.join(required)}: write "
            f'{{"name": "{ref}", "params": {{{example}}}}}')
