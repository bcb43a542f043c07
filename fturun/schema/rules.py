"""Cross-field rules that a JSON Schema cannot say well: required component params, eval data for
evaluation, the best-model metric, search spaces and DeepSpeed configs that agree with the recipe.

Every rule tolerates malformed input (the schema errors already report it): each looks only at
well-typed values. A rule reports through ``add(path, message)``."""

from __future__ import annotations

import os
import re

from ..core.errors import RecipeError
from ..core.suggest import suggest
from ..plugin.registry import Registry
from ..recipe.load import Recipe, read_json_file
from ..recipe.paths import resolve_path
from ..recipe.refs import component_name
from .compose import compose_schema
from .numbers import recipe_validator
from .problems import problem, problems_from_error
from .search_rules import check_space
from .sections import COMPONENT_SECTIONS, DEEPSPEED_CONFIG
from .task_rules import (
    check_task_data,
    computed_metric_names,
    effective_metrics,
    generation_metrics,
)


def check_rules(recipe: Recipe, registry: Registry) -> list:
    """Every cross-field problem of ``recipe`` (located :class:`~fturun.core.errors.Problem` s)."""
    data = recipe.data
    problems = []

    def add(path, message):
        problems.append(problem(recipe, path, message))

    data_section = _section(data, "data")
    training = _section(data, "training")
    _check_bare_names(registry, data, data_section, add)
    _check_mix(data_section, add)
    _check_evaluation(data_section, training, add)
    _check_best_model_metric(registry, data, training, add)
    check_task_data(data, data_section, add, registry, recipe.base_dir)
    _check_search(registry, data, add)
    _check_deepspeed(recipe, data, training, add)
    _check_counts(data, add)
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
    train = data_section.get("train")
    for index, entry in enumerate(train if isinstance(train, list) else []):
        if isinstance(entry, dict):
            _check_bare_name(registry, "dataset", entry.get("dataset"),
                             ["data", "train", index, "dataset"], add)


def _check_mix(data_section, add) -> None:
    """``data.stopping_strategy`` belongs to a mix (a list of ``data.train`` sources)."""
    if "stopping_strategy" in data_section and not isinstance(data_section.get("train"), list):
        add(["data", "stopping_strategy"], "data.stopping_strategy is for a mix: a list of "
            'data.train sources ([{"dataset": ..., "weight": ...}, ...]); remove it')


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
    computed = ["loss"] + computed_metric_names(data, registry) + [
        name for name in map(component_name, generation_metrics(data, registry)) if name]
    bare = metric[len("eval_"):] if metric.startswith("eval_") else metric
    if any(bare == m or bare.startswith(m + "_") for m in computed) or \
            _declared_metric_key(registry, data, bare):
        return None
    return (f"'{metric}' is not a metric this recipe computes{suggest(bare, computed)}; "
            f"computed: {', '.join(computed)}")


def _declared_metric_key(registry, data, key: str) -> bool:
    """Whether a metric of the recipe declares (``"x-fturun-keys"``: a regular expression in its
    params schema) that it returns ``key``, e.g. ``f1_sports`` from a per-class metric."""
    for ref in effective_metrics(data, registry) + generation_metrics(data, registry):
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
    check_space(compose_schema(registry), data, search, add)
    metric = search.get("metric")
    if isinstance(metric, str):
        message = _unknown_metric(registry, data, metric)
        if message:
            add(["search", "metric"], message)
    if not _has_eval_data(_section(data, "data")):
        add(["search"], "a search scores trials on eval data: add data.eval (a dataset) or "
            "data.split.eval (e.g. 0.2)")
    storage = search.get("storage")
    if isinstance(storage, str) and "://" not in storage and \
            not storage.endswith((".log", ".journal")):
        add(["search", "storage"], f"'{storage}' is neither a database URL (sqlite:///study.db, "
            "postgresql://host/db, mysql://...) nor a journal file path ending .log")


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
        config, positions = read_json_file(path)
    except RecipeError as exc:
        for found in exc.problems:
            add(["deepspeed"], f"DeepSpeed config '{name}': {found}")
        return None
    origins = {p: (path, line, col) for p, (line, col) in positions.items()}
    config_file = Recipe(data=config, path=path, origins=origins)
    for error in recipe_validator(DEEPSPEED_CONFIG).iter_errors(config):
        for found in problems_from_error(config_file, error):
            add(["deepspeed"], str(found))
    return config


#: keys whose value is a fraction when below 1, else a count (of what), which must be an integer
FRACTION_OR_COUNT = {
    ("data", "split", "eval"): "rows", ("data", "split", "test"): "rows",
    ("training", "eval_steps"): "steps", ("training", "logging_steps"): "steps",
    ("training", "save_steps"): "steps", ("training", "warmup_steps"): "steps",
    ("scheduler", "params", "warmup"): "steps",
}


def _check_counts(data, add) -> None:
    """A fraction-or-count key at 1 or more holds a count: a JSON integer (``10``, not ``10.0``
    or ``10.5``, which the Trainer truncates or refuses)."""
    for path, unit in FRACTION_OR_COUNT.items():
        value = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, float) and value >= 1:
            fix = f"write {int(value)}" if value.is_integer() else f"write a whole number of {unit}"
            share = "the train rows" if unit == "rows" else "the training steps"
            add(list(path), f"{value} is a number of {unit} (1 or more), which must be an "
                f"integer: {fix}, or a fraction below 1 for a share of {share}")
