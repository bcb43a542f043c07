"""Cross-field rules that a JSON Schema cannot say well: required component params, eval data for
evaluation, the best-model metric, search spaces and DeepSpeed configs that agree with the recipe.

Every rule tolerates malformed input (the schema errors already report it): each looks only at
well-typed values. A rule reports through ``add(path, message)``."""

from __future__ import annotations

import json
import os
import re

from ..paths import resolve_path
from ..recipe import Recipe, json_path
from ..registry import Registry, component_name, suggest
from .compose import compose_schema
from .keys import check_recipe_key
from .problems import problem
from .sections import COMPONENT_SECTIONS, DEEPSPEED_CONFIG
from .task_rules import check_task_data, computed_metric_names, effective_metrics


def check_rules(recipe: Recipe, registry: Registry) -> list:
    """Every cross-field problem of ``recipe`` (located :class:`~fturun.errors.Problem` s)."""
    data = recipe.data
    problems = []

    def add(path, message):
        problems.append(problem(recipe, path, message))

    data_section = _section(data, "data")
    training = _section(data, "training")
    _check_bare_names(registry, data, data_section, add)
    _check_evaluation(data_section, training, add)
    _check_best_model_metric(registry, data, training, add)
    check_task_data(data, data_section, add, registry)
    _check_search(registry, data, add)
    _check_deepspeed(recipe, data, training, add)
    for section, key in (("optimizer", "optim"), ("scheduler", "lr_scheduler_type")):
        if data.get(section) is not None and key in training:
            add(["training", key], f"set both here and in '{section}'; keep one (the "
                f"'{section}' component can take params)")
    return problems


def _section(data, key) -> dict:
    """``data[key]`` when it is an object, else ``{}``."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _check_bare_names(registry, data, data_section, add) -> None:
    """A bare name is only enough for a component without required params."""
    for section, (kind, is_list) in COMPONENT_SECTIONS.items():
        refs = data.get(section)
        items = list(enumerate(refs)) if is_list and isinstance(refs, list) else [(None, refs)]
        for index, ref in items:
            _check_bare_name(registry, kind, ref, [section] + ([index] if is_list else []), add)
    for split in ("train", "eval", "test"):
        _check_bare_name(registry, "dataset", data_section.get(split), ["data", split], add)


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


def _has_eval_data(data_section) -> bool:
    return "eval" in data_section or "eval" in _section(data_section, "split")


def _check_evaluation(data_section, training, add) -> None:
    """Splits that leave data to train on; evaluation and best-model settings that agree."""
    split = _section(data_section, "split")
    if "eval" in data_section and "eval" in split:
        add(["data", "split", "eval"], "both data.eval and data.split.eval are set; keep one "
            "(a separate eval source, or a split of the train source)")
    sizes = [split.get(k) for k in ("eval", "test")]
    fractions = [s for s in sizes if isinstance(s, (int, float)) and not isinstance(s, bool)
                 and s < 1]
    if sum(fractions) >= 1:
        add(["data", "split"], "eval and test fractions add up to 1 or more; leave some "
            "data to train on")
    eval_strategy = training.get("eval_strategy", "no")
    save_strategy = training.get("save_strategy", "steps")
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
            and not _has_eval_data(data_section):
        add(["training", "eval_strategy"], f"eval_strategy '{eval_strategy}' needs eval data: "
            "add data.eval (a dataset) or data.split.eval (e.g. 0.2)")


def _check_best_model_metric(registry, data, training, add) -> None:
    """``metric_for_best_model`` is computed, and early stopping has a metric to watch."""
    metric = training.get("metric_for_best_model")
    if isinstance(metric, str):
        message = _unknown_metric(registry, data, metric)
        if message:
            add(["training", "metric_for_best_model"], f"{message} (add it to 'metrics')")
    callbacks = data.get("callbacks") if isinstance(data.get("callbacks"), list) else []
    for index, ref in enumerate(callbacks):
        if component_name(ref) == "early_stopping" and not (
                training.get("load_best_model_at_end") is True
                and isinstance(metric, str)):
            add(["callbacks", index], "early_stopping needs training.load_best_model_at_end="
                "true and training.metric_for_best_model (the metric it watches)")


def _unknown_metric(registry, data, metric: str) -> str | None:
    """None when the recipe computes ``metric`` (``eval_`` prefix optional), else why not."""
    computed = ["loss"] + computed_metric_names(data, registry)
    bare = metric[len("eval_"):] if metric.startswith("eval_") else metric
    if any(bare == m or bare.startswith(m + "_") for m in computed) or \
            _declared_metric_key(registry, data, bare):
        return None
    return (f"'{metric}' is not a metric this recipe computes{suggest(bare, computed)}; "
            f"computed: {', '.join(computed)}")


def _declared_metric_key(registry, data, key: str) -> bool:
    """Whether a metric of the recipe declares (``"x-fturun-keys"``: a regular expression in its
    params schema) that it returns ``key``, e.g. ``f1_sports`` from a per-class metric."""
    for ref in effective_metrics(data, registry):
        component = registry.components["metric"].get(component_name(ref) or "")
        pattern = component.params_schema.get("x-fturun-keys") if component else None
        if isinstance(pattern, str) and re.fullmatch(pattern, key):
            return True
    return False


def _check_search(registry, data, add) -> None:
    """What Optuna would refuse at run time, reported before any trial starts."""
    search = data.get("search")
    if not isinstance(search, dict):
        return
    space = _section(search, "space")
    if space:
        _check_space_keys(compose_schema(registry), data, space, add)
    metric = search.get("metric")
    if isinstance(metric, str):
        message = _unknown_metric(registry, data, metric)
        if message:
            add(["search", "metric"], message)
    if not _has_eval_data(_section(data, "data")):
        add(["search"], "a search scores trials on eval data: add data.eval (a dataset) or "
            "data.split.eval (e.g. 0.2)")
    entries = {k: e for k, e in space.items() if isinstance(e, dict)}
    _check_space_entries(search, entries, add)
    _check_enqueue(search, space, entries, add)
    storage = search.get("storage")
    if isinstance(storage, str) and "://" not in storage and \
            not storage.endswith((".log", ".journal")):
        add(["search", "storage"], f"'{storage}' is neither a database URL (sqlite:///study.db, "
            "postgresql://host/db, mysql://...) nor a journal file path ending .log")


def _check_space_keys(schema, data, space, add) -> None:
    """Each space key names a settable recipe key; each range is ordered (and above 0 on a
    log scale)."""
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


def _check_space_entries(search, entries, add) -> None:
    """Step with log, integer bounds, and a finite grid for the grid sampler."""
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
                if value not in (entry.get("choices") or []):
                    add(where, f"{json.dumps(value)} is not one of the choices "
                        f"{json.dumps(entry.get('choices'))}")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                add(where, f"a {entry.get('type')} range needs a number, got {json.dumps(value)}")
            elif isinstance(entry.get("low"), (int, float)) and \
                    isinstance(entry.get("high"), (int, float)) and \
                    not entry["low"] <= value <= entry["high"]:
                add(where, f"{value} is outside the range [{entry['low']}, {entry['high']}]")


def _check_deepspeed(recipe, data, training, add) -> None:
    """A DeepSpeed config (inline, or a file checked against its schema) that agrees with
    ``training``."""
    config = data.get("deepspeed")
    if isinstance(config, str):
        config = _read_deepspeed_file(recipe, config, add)
    if not isinstance(config, dict):
        return
    zero = _section(config, "zero_optimization")
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


def _read_deepspeed_file(recipe, name: str, add):
    """The config in DeepSpeed JSON file ``name`` (relative to the recipe), its schema errors
    reported; None when it cannot be read."""
    path = resolve_path(name, recipe.base_dir)
    if not os.path.isfile(path):
        add(["deepspeed"], f"DeepSpeed config '{name}' not found (looked for {path}; "
            "the path is relative to the recipe)")
        return None
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        add(["deepspeed"], f"DeepSpeed config '{name}' is not valid JSON: {exc}")
        return None
    from jsonschema import Draft202012Validator

    for error in Draft202012Validator(DEEPSPEED_CONFIG).iter_errors(config):
        where = json_path(error.absolute_path).replace("$", f"{path}::$", 1)
        add(["deepspeed"], f"{where}: {error.message}")
    return config
