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

#: metrics a task computes when the recipe has no ``metrics`` (language models always add
#: perplexity)
TASK_DEFAULT_METRICS = {
    "token-classification": ["seqeval"],
    "masked-lm": ["perplexity"],
    "causal-lm": ["perplexity"],
    "seq2seq": ["rouge", "bleu"],
}

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

AUTO = {"const": "auto"}
_INT_OR_AUTO = {"anyOf": [{"type": "integer", "minimum": 1}, AUTO]}
_BOOL_OR_AUTO = {"anyOf": [{"type": "boolean"}, AUTO]}
_OFFLOAD = {
    "type": "object",
    "properties": {
        "device": {"enum": ["none", "cpu", "nvme"]},
        "pin_memory": {"type": "boolean"},
        "nvme_path": {"type": "string"},
    },
}
DEEPSPEED_CONFIG = {
    "type": "object",
    "description": "a DeepSpeed config; 'auto' values are filled from 'training' by the Trainer",
    "properties": {
        "train_batch_size": _INT_OR_AUTO,
        "train_micro_batch_size_per_gpu": _INT_OR_AUTO,
        "gradient_accumulation_steps": _INT_OR_AUTO,
        "gradient_clipping": {"anyOf": [{"type": "number", "minimum": 0}, AUTO]},
        "steps_per_print": {"type": "integer", "minimum": 1},
        "wall_clock_breakdown": {"type": "boolean"},
        "fp16": {"type": "object", "properties": {"enabled": _BOOL_OR_AUTO}},
        "bf16": {"type": "object", "properties": {"enabled": _BOOL_OR_AUTO}},
        "optimizer": {"type": "object", "required": ["type"],
                      "properties": {"type": {"type": "string"}, "params": {"type": "object"}}},
        "scheduler": {"type": "object", "required": ["type"],
                      "properties": {"type": {"type": "string"}, "params": {"type": "object"}}},
        "zero_optimization": {
            "type": "object",
            "required": ["stage"],
            "properties": {
                "stage": {"enum": [0, 1, 2, 3],
                          "description": "0 off, 1 optimizer states, 2 + gradients, "
                                         "3 + parameters"},
                "offload_optimizer": _OFFLOAD,
                "offload_param": _OFFLOAD,
                "overlap_comm": {"type": "boolean"},
                "contiguous_gradients": {"type": "boolean"},
                "allgather_partitions": {"type": "boolean"},
                "reduce_scatter": {"type": "boolean"},
                "allgather_bucket_size": {"anyOf": [{"type": "number", "minimum": 1}, AUTO]},
                "reduce_bucket_size": {"anyOf": [{"type": "number", "minimum": 1}, AUTO]},
                "stage3_prefetch_bucket_size": {"anyOf": [{"type": "number", "minimum": 1},
                                                          AUTO]},
                "stage3_param_persistence_threshold": {"anyOf": [{"type": "number"}, AUTO]},
                "stage3_gather_16bit_weights_on_model_save": {"type": "boolean"},
                "sub_group_size": {"type": "number", "minimum": 1},
                "round_robin_gradients": {"type": "boolean"},
            },
        },
    },
}

_SPACE_ENTRY = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["float", "int", "categorical"]},
        "low": {"type": "number"},
        "high": {"type": "number"},
        "step": {"type": "number", "exclusiveMinimum": 0},
        "log": {"type": "boolean", "default": False},
        "choices": {"type": "array", "minItems": 1},
    },
    "allOf": [
        {"if": {"properties": {"type": {"enum": ["float", "int"]}}},
         "then": {"required": ["low", "high"]}},
        {"if": {"properties": {"type": {"const": "categorical"}}},
         "then": {"required": ["choices"]}},
    ],
}
SEARCH = {
    "type": "object",
    "description": "hyperparameter search with Optuna: every trial is a nested MLflow run",
    "required": ["space"],
    "properties": {
        "metric": {"type": "string", "description": "the eval metric to optimise (default: "
                                                    "training.metric_for_best_model, else loss)"},
        "direction": {"enum": ["maximize", "minimize"],
                      "description": "default: minimize for loss/perplexity, else maximize"},
        "n_trials": {"type": "integer", "minimum": 1, "default": 10},
        "timeout_minutes": {"type": "number", "exclusiveMinimum": 0,
                            "description": "stop starting trials after this long"},
        "sampler": {"enum": ["tpe", "random", "grid"], "default": "tpe"},
        "seed": {"type": "integer", "minimum": 0,
                 "description": "sampler seed (default: the recipe seed)"},
        "pruner": {"enum": ["none", "median", "hyperband", "successive_halving"],
                   "default": "median"},
        "pruner_warmup_steps": {"type": "integer", "minimum": 0, "default": 0,
                                "description": "steps before the median pruner prunes; the "
                                               "min_resource of hyperband/successive_halving"},
        "pruner_startup_trials": {"type": "integer", "minimum": 0,
                                  "description": "trials that finish before the median pruner "
                                                 "prunes (default: n_trials/4, at most 5)"},
        "enqueue": {"type": "array", "items": {"type": "object"},
                    "description": "trials to run first, e.g. the recipe's own values: "
                                   "[{\"training.learning_rate\": 2e-4}] (space keys; keys "
                                   "left out are sampled)"},
        "storage": {"type": "string", "description": "Optuna storage URL shared by several "
                                                     "processes or machines, e.g. "
                                                     "sqlite:///study.db or "
                                                     "postgresql://host/db"},
        "study_name": {"type": "string", "minLength": 1},
        "space": {
            "type": "object",
            "minProperties": 1,
            "description": "dotted recipe key -> distribution, e.g. "
                           "{\"training.learning_rate\": {\"type\": \"float\", "
                           "\"low\": 1e-5, \"high\": 1e-3, \"log\": true}}",
            "additionalProperties": _SPACE_ENTRY,
        },
    },
}

GENERATION = {
    "type": "object",
    "description": "causal-lm/seq2seq: how evaluation (seq2seq) and the sample generations at "
                   "the end of a run generate",
    "additionalProperties": False,
    "properties": {
        "max_new_tokens": {"type": "integer", "minimum": 1, "default": 32},
        "num_beams": {"type": "integer", "minimum": 1, "default": 1},
        "do_sample": {"type": "boolean", "default": False},
        "temperature": {"type": "number", "exclusiveMinimum": 0},
        "top_k": {"type": "integer", "minimum": 0},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "prompts": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "description": "prompts of the sample generations (default: the first "
                                   "eval rows)"},
        "num_samples": {"type": "integer", "minimum": 0, "default": 3,
                        "description": "sample generations written at the end (0: none)"},
    },
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
                "block_size": {"type": "integer", "minimum": 2,
                               "description": "masked-lm/causal-lm: concatenate the tokenized "
                                              "texts and cut them into blocks of this many "
                                              "tokens (instead of one truncated row per text)"},
                "packing": {"type": "boolean", "default": False,
                            "description": "causal-lm: pack each batch's texts into one row "
                                           "without attention across them (no padding); the "
                                           "default collator becomes 'packing'"},
                "max_target_length": {"type": "integer", "minimum": 1,
                                      "description": "seq2seq: tokens per target after "
                                                     "truncation (default: max_length)"},
                "label_all_tokens": {"type": "boolean", "default": False,
                                     "description": "token-classification: label every word "
                                                    "piece of a word (training), not only the "
                                                    "first"},
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
    properties["deepspeed"] = {
        "description": "DeepSpeed: a config object, or the path of a DeepSpeed JSON config "
                       "(relative to the recipe)",
        "anyOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/deepspeed_config"}],
    }
    properties["search"] = SEARCH
    properties["generation"] = GENERATION
    defs["deepspeed_config"] = DEEPSPEED_CONFIG
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
    if validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        # the branch that fits the value's type says the most useful thing
        same_type = [e for e in error.context if e.validator != "type"]
        return _problems_from_error(recipe, best_match(same_type or error.context))
    if validator == "const":
        return [_problem(recipe, path, f"must be {_short(error.validator_value)}, got "
                         f"{_short(error.instance)}")]
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
        if not any(bare == m or bare.startswith(m + "_") for m in computed) and \
                not _declared_metric_key(registry, data, bare):
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
    _check_task_data(data, data_section, add)
    _check_search(recipe, registry, data, add)
    _check_deepspeed(recipe, data, training, add)
    for section, key in (("optimizer", "optim"), ("scheduler", "lr_scheduler_type")):
        if data.get(section) is not None and key in training:
            add(["training", key], f"set both here and in '{section}'; keep one (the "
                f"'{section}' component can take params)")
    return problems


def _check_task_data(data, data_section, add) -> None:
    """Data settings that only some tasks use."""
    task = data.get("task", "sequence-classification")
    if not isinstance(task, str):
        return
    for key, tasks in (("block_size", ("masked-lm", "causal-lm")), ("packing", ("causal-lm",)),
                       ("max_target_length", ("seq2seq",)),
                       ("label_all_tokens", ("token-classification",))):
        if data_section.get(key) not in (None, False) and task not in tasks:
            add(["data", key], f"data.{key} is for task {' or '.join(tasks)}, not '{task}'")
    if data_section.get("packing") is True and task == "causal-lm":
        if data_section.get("block_size") is not None:
            add(["data", "packing"], "data.packing and data.block_size both shape the rows; "
                "keep one (packing: whole texts without padding; block_size: fixed blocks)")
        collator = _component_name(data.get("collator"))
        if collator is not None and collator != "packing":
            add(["collator"], f"data.packing needs the 'packing' collator, not '{collator}'; "
                "remove 'collator' (packing is the default then)")
    if data.get("generation") is not None and task not in ("causal-lm", "seq2seq"):
        add(["generation"], f"'generation' is for task causal-lm or seq2seq, not '{task}'")


def _check_search(recipe, registry, data, add) -> None:
    search = data.get("search")
    if not isinstance(search, dict):
        return
    space = search.get("space")
    if isinstance(space, dict):
        schema = compose_schema(registry)
        for key, entry in space.items():
            message = check_recipe_key(schema, data, key)
            if message:
                add(["search", "space", key], message)
            if isinstance(entry, dict) and entry.get("type") in ("float", "int"):
                low, high = entry.get("low"), entry.get("high")
                if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                    if low >= high:
                        add(["search", "space", key], f"low ({low}) must be below high ({high})")
                    if entry.get("log") and low <= 0:
                        add(["search", "space", key], "a log scale needs low > 0")
    metric = search.get("metric")
    if isinstance(metric, str):
        computed = ["loss"] + computed_metric_names(data)
        bare = metric[len("eval_"):] if metric.startswith("eval_") else metric
        if not any(bare == m or bare.startswith(m + "_") for m in computed) and \
                not _declared_metric_key(registry, data, bare):
            add(["search", "metric"], f"'{metric}' is not a metric this recipe computes"
                f"{suggest(bare, computed)}; computed: {', '.join(computed)}")
    _check_search_execution(data, search, space if isinstance(space, dict) else {}, add)
    if "n_trials" not in search and "timeout_minutes" not in search:
        pass  # n_trials defaults to 10


def _check_search_execution(data, search, space, add) -> None:
    """What Optuna would refuse at run time: eval data, grid-able spaces, enqueued values,
    step with log, integer bounds, the storage's form."""
    data_section = data.get("data") if isinstance(data.get("data"), dict) else {}
    split = data_section.get("split") if isinstance(data_section.get("split"), dict) else {}
    if "eval" not in data_section and "eval" not in split:
        add(["search"], "a search scores trials on eval data: add data.eval (a dataset) or "
            "data.split.eval (e.g. 0.2)")
    entries = {k: e for k, e in space.items() if isinstance(e, dict)}
    for key, entry in entries.items():
        kind = entry.get("type")
        if kind in ("float", "int") and entry.get("log") and entry.get("step") is not None:
            add(["search", "space", key], "step and log cannot both be set; keep one")
        if kind == "int":
            for bound in ("low", "high", "step"):
                value = entry.get(bound)
                if isinstance(value, float) and not value.is_integer():
                    add(["search", "space", key, bound], f"an int range needs a whole number, "
                        f"got {value}")
        if search.get("sampler") == "grid" and kind == "float" and entry.get("step") is None:
            add(["search", "space", key], "the grid sampler needs a finite grid: make this "
                "space categorical, or give the float range a step")
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
                if value not in (entry.get("choices") or []):
                    add(where, f"{json.dumps(value)} is not one of the choices "
                        f"{json.dumps(entry.get('choices'))}")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                add(where, f"a {entry.get('type')} range needs a number, got {json.dumps(value)}")
            elif isinstance(entry.get("low"), (int, float)) and \
                    isinstance(entry.get("high"), (int, float)) and \
                    not entry["low"] <= value <= entry["high"]:
                add(where, f"{value} is outside the range [{entry['low']}, {entry['high']}]")
    storage = search.get("storage")
    if isinstance(storage, str) and "://" not in storage and \
            not storage.endswith((".log", ".journal")):
        add(["search", "storage"], f"'{storage}' is neither a database URL (sqlite:///study.db, "
            "postgresql://host/db, mysql://...) nor a journal file path ending .log")


def check_recipe_key(schema: dict, data: dict, dotted: str) -> str | None:
    """None when ``dotted`` (e.g. ``adapter.params.r``) names a settable key of this recipe,
    else a message with a suggestion. Component params are looked up for the component the
    recipe names at that place."""
    node = {"$ref": "#"}
    value = data
    walked = []
    for part in dotted.split("."):
        node = _deref(schema, node)
        if "else" in node and "if" in node and node.get("type") == ["string", "object"]:
            node = node["else"]  # a component reference, written as an object
            if isinstance(value, str):
                value = {"name": value}
        where = ".".join(walked) or "the recipe"
        if node.get("type") == "array" or "items" in node:
            if not part.isdigit():
                return f"'{dotted}': {where} is a list; use an index, e.g. {where}.0"
            node = node.get("items", {})
            value = value[int(part)] if isinstance(value, list) and int(part) < len(value) \
                else None
        else:
            props = dict(node.get("properties", {}))
            if part == "params" and isinstance(value, dict) and "allOf" in node:
                name = value.get("name")
                for branch in node["allOf"]:
                    if branch["if"]["properties"]["name"].get("const") == name:
                        props["params"] = branch["then"]["properties"]["params"]
                        break
                else:
                    return f"'{dotted}': {where} names no component with params"
            if part not in props:
                if isinstance(node.get("additionalProperties"), dict):
                    node = node["additionalProperties"]
                    value = value.get(part) if isinstance(value, dict) else None
                    walked.append(part)
                    continue
                return (f"'{dotted}' is not a recipe key: {where} has no '{part}'"
                        f"{suggest(part, props)}")
            node = props[part]
            value = value.get(part) if isinstance(value, dict) else None
        walked.append(part)
    return None


def _deref(schema, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        node = schema
        for piece in ref.lstrip("#/").split("/"):
            if piece:
                node = node[piece]
    return node


def _check_deepspeed(recipe, data, training, add) -> None:
    config = data.get("deepspeed")
    if isinstance(config, str):
        from .context import resolve_path

        path = resolve_path(config, recipe.base_dir)
        import os

        if not os.path.isfile(path):
            add(["deepspeed"], f"DeepSpeed config '{config}' not found (looked for {path}; "
                "the path is relative to the recipe)")
            return
        try:
            with open(path) as f:
                config = json.load(f)
        except (OSError, ValueError) as exc:
            add(["deepspeed"], f"DeepSpeed config '{config}' is not valid JSON: {exc}")
            return
        from jsonschema import Draft202012Validator

        for error in Draft202012Validator(DEEPSPEED_CONFIG).iter_errors(config):
            where = json_path(error.absolute_path).replace("$", f"{path}::$", 1)
            add(["deepspeed"], f"{where}: {error.message}")
    if not isinstance(config, dict):
        return
    zero = config.get("zero_optimization") if isinstance(config.get("zero_optimization"),
                                                         dict) else {}
    if "offload_param" in zero and zero.get("stage") != 3:
        add(["deepspeed", "zero_optimization", "offload_param"],
            f"offload_param needs ZeRO stage 3 (stage is {zero.get('stage')}); use "
            "offload_optimizer with stage 1-2")
    pairs = [("train_micro_batch_size_per_gpu", "per_device_train_batch_size", 8),
             ("gradient_accumulation_steps", "gradient_accumulation_steps", 1)]
    for ds_key, arg, default in pairs:
        value = config.get(ds_key)
        if isinstance(value, int) and not isinstance(value, bool) and \
                value != training.get(arg, default):
            add(["deepspeed", ds_key], f"{value} contradicts training.{arg} "
                f"({training.get(arg, default)}); write \"auto\" to take it from training")
    for precision in ("fp16", "bf16"):
        section = config.get(precision)
        if isinstance(section, dict) and section.get("enabled") is True and \
                training.get(precision) is not True:
            add(["deepspeed", precision, "enabled"], f"DeepSpeed {precision} is on but "
                f"training.{precision} is not; write \"auto\" or set training.{precision}")


def _declared_metric_key(registry, data, key: str) -> bool:
    """Whether a metric of the recipe declares (``"x-fturun-keys"``: a regular expression in its
    params schema) that it returns ``key``, e.g. ``f1_sports`` from a per-class metric."""
    import re

    for ref in effective_metrics(data):
        component = registry.components["metric"].get(_component_name(ref) or "")
        pattern = component.params_schema.get("x-fturun-keys") if component else None
        if isinstance(pattern, str) and re.fullmatch(pattern, key):
            return True
    return False


def computed_metric_names(data: dict) -> list:
    """Names of the metrics a recipe computes (the keys its metric functions return)."""
    return [n for n in (_component_name(m) for m in effective_metrics(data)) if n]


def effective_metrics(data: dict) -> list:
    """The metric references a recipe computes: its ``metrics``, else its task's defaults
    (:data:`TASK_DEFAULT_METRICS`); language models always compute perplexity."""
    metrics = data.get("metrics")
    task = data.get("task")
    if isinstance(metrics, list):
        refs = list(metrics)
    else:
        refs = list(TASK_DEFAULT_METRICS.get(task if isinstance(task, str) else "", []))
    if task in ("masked-lm", "causal-lm") and "perplexity" not in [_component_name(r)
                                                                   for r in refs]:
        refs.append("perplexity")
    return refs


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
