"""The ``search`` section resolved into a plan: the metric and direction, the sampler and pruner
settings, the space; and what a trial's values become: Optuna suggestions, recipe values set at
their dotted keys (the logic of command-line overrides)."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field

from ..core.errors import RecipeRuntimeError
from ..recipe.load import Recipe, apply_override

#: metrics that are better when lower (the default direction is minimize for these)
LOWER_IS_BETTER = ("loss", "perplexity")


@dataclass
class SearchPlan:
    """The ``search`` section with every default filled in."""

    metric_key: str  # the eval metric as the Trainer names it, e.g. eval_loss
    direction: str
    n_trials: int | None
    timeout_s: float | None
    sampler: str
    seed: int
    pruner: str
    warmup_steps: int
    startup_trials: int
    storage: str | None
    study_name: str
    space: dict
    enqueue: list = field(default_factory=list)
    encoded: set = field(default_factory=set)  # categorical keys whose choices are JSON-encoded

    @classmethod
    def from_recipe(cls, recipe) -> SearchPlan:
        data = recipe.data
        search = data["search"]
        training = data.get("training") or {}
        metric = search.get("metric") or training.get("metric_for_best_model") or "loss"
        key = metric if metric.startswith("eval_") else f"eval_{metric}"
        bare = key[len("eval_"):]
        direction = search.get("direction")
        if direction is None:
            if not search.get("metric") and training.get("metric_for_best_model") and \
                    "greater_is_better" in training:
                direction = "maximize" if training["greater_is_better"] else "minimize"
            elif bare in LOWER_IS_BETTER or bare.endswith("loss"):
                direction = "minimize"
            else:
                direction = "maximize"
        space = dict(search["space"])
        encoded = {k for k, e in space.items() if e.get("type") == "categorical"
                   and not all(c is None or isinstance(c, (bool, int, float, str))
                               for c in e["choices"])}
        n_trials = search.get("n_trials")
        timeout = search.get("timeout_minutes")
        sampler = search.get("sampler", "tpe")
        if n_trials is None and timeout is None:
            n_trials = grid_size(space) if sampler == "grid" else 10
        startup = search.get("pruner_startup_trials")
        if startup is None:
            startup = min(5, max(1, n_trials // 4)) if n_trials else 5
        return cls(metric_key=key, direction=direction, n_trials=n_trials,
                   timeout_s=timeout * 60 if timeout else None, sampler=sampler,
                   seed=search.get("seed", data.get("seed", 42)),
                   pruner=search.get("pruner", "median"),
                   warmup_steps=search.get("pruner_warmup_steps", 0), startup_trials=startup,
                   storage=search.get("storage"),
                   study_name=search.get("study_name") or stem(recipe.path),
                   space=space, enqueue=list(search.get("enqueue") or []), encoded=encoded)

    def decode(self, params: dict) -> dict:
        """Optuna's params (JSON-encoded non-scalar choices) -> recipe values."""
        return {k: json.loads(v) if k in self.encoded and isinstance(v, str) else v
                for k, v in params.items()}

    def encode(self, values: dict) -> dict:
        """Recipe values -> Optuna's params."""
        return {k: json.dumps(v) if k in self.encoded else v for k, v in values.items()}

def grid_values(entry: dict) -> list:
    """Every value of a space entry on the grid (categorical, int, or float with a step)."""
    kind = entry["type"]
    if kind == "categorical":
        return list(entry["choices"])
    low, high = entry["low"], entry["high"]
    step = entry.get("step") or 1
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    if kind == "int":
        return [int(low) + i * int(step) for i in range(count)]
    return [round(low + i * step, 12) for i in range(count)]

def grid_size(space: dict) -> int:
    size = 1
    for entry in space.values():
        size *= len(grid_values(entry))
    return size

def suggest(trial, plan: SearchPlan) -> dict:
    """The trial's value for every space key, as recipe values."""
    values = {}
    for key, entry in plan.space.items():
        kind = entry["type"]
        if kind == "float":
            value = trial.suggest_float(key, entry["low"], entry["high"],
                                        log=entry.get("log", False), step=entry.get("step"))
        elif kind == "int":
            value = trial.suggest_int(key, int(entry["low"]), int(entry["high"]),
                                      step=int(entry.get("step") or 1),
                                      log=entry.get("log", False))
        else:
            choices = entry["choices"]
            if key in plan.encoded:
                choices = [json.dumps(c) for c in choices]
            value = trial.suggest_categorical(key, choices)
        values[key] = value
    return plan.decode(values)

def recipe_with(recipe, values: dict) -> Recipe:
    """A copy of ``recipe`` with ``values`` set at their dotted keys (as overrides, so they show
    in the run's tags) and without the ``search`` section: one run's recipe."""
    data = copy.deepcopy(recipe.data)
    data.pop("search", None)
    new = Recipe(data=data, path=recipe.path, overrides=list(recipe.overrides),
                 origins=dict(recipe.origins), files=list(recipe.files),
                 base_dir=recipe.base_dir)
    for key, value in values.items():
        text = f"{key}={json.dumps(value)}"
        try:
            apply_override(new, text)
        except ValueError as exc:
            raise RecipeRuntimeError(f"search.space: cannot set {key}: {exc}") from None
        new.overrides.append(text)
    return new

def describe(values: dict) -> str:
    """``a=1, b=0.0003``: values as a short line."""
    def show(v):
        return f"{v:.4g}" if isinstance(v, float) else json.dumps(v)

    return ", ".join(f"{k}={show(v)}" for k, v in values.items())

def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0] or "study"
