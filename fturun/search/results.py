"""A study's results: ``trials.json``, ``best_params.json``, ``best_recipe.json`` and the
optimisation history plot, logged on the parent run; and the summary printed at the end."""

from __future__ import annotations

import json
import os
import shlex

from ..core.io import write_json
from ..recipe.load import Recipe, apply_override
from ..run.report import duration
from ..tracking import log_run_results
from .plan import describe, recipe_with


def finish_study(study, recipe, plan, output_dir, parent) -> dict:
    """Write and log the study's results: trials.json, the optimisation history plot, and when a
    trial completed, best_params.json and best_recipe.json (the recipe with the best values and
    without its search section). Returns a summary."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in trials:
        name = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(
            t.state.name, t.state.name.lower())
        counts[name] = counts.get(name, 0) + 1
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
             "params": plan.decode(t.params),
             "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
             "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
             "error": t.user_attrs.get("error"),
             "seconds": t.duration.total_seconds() if t.duration else None} for t in trials]
    trials_file = os.path.join(output_dir, "trials.json")
    write_json(trials_file, rows)
    summary = {"counts": counts, "best": None, "files": {"trials": trials_file}}
    plot = plot_history(trials, plan, os.path.join(output_dir, "optimization_history.png"))
    if plot:
        summary["files"]["history plot"] = plot
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        values = plan.decode(best.params)
        best_recipe = best_recipe_for(recipe, values, output_dir)
        summary["best"] = {"number": best.number, "value": best.value, "params": values,
                           "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
                           "output_dir": best.user_attrs.get("output_dir"),
                           "overrides": best_recipe.overrides}
        params_file = os.path.join(output_dir, "best_params.json")
        write_json(params_file, {"metric": plan.metric_key, "direction": plan.direction,
                                 "value": best.value, "trial": best.number,
                                 "params": values, "mlflow_run_id":
                                     best.user_attrs.get("mlflow_run_id")})
        recipe_file = os.path.join(output_dir, "best_recipe.json")
        write_json(recipe_file, best_recipe.data)
        summary["files"].update({"best params": params_file, "best recipe": recipe_file})
        parent.set_tags({"fturun.best_trial": str(best.number),
                         "fturun.best_run_id": best.user_attrs.get("mlflow_run_id") or ""})
        parent.log_metrics({"best_value": best.value}, len(trials))
    parent.log_metrics({f"n_{k}": v for k, v in counts.items()}, len(trials))
    for path in summary["files"].values():
        parent.log_artifact(path)
    log_run_results(parent, recipe, [], output_dir, None, None)
    return summary

def best_recipe_for(recipe, values: dict, output_dir: str) -> Recipe:
    """The recipe with the best values, without its search section, training into
    ``OUTPUT_DIR/best`` (not over the study's files); the overrides that make it from the
    original recipe are in ``.overrides``."""
    best = recipe_with(recipe, values)
    text = f"training.output_dir={json.dumps(os.path.join(output_dir, 'best'))}"
    apply_override(best, text)
    best.overrides.append(text)
    best.data.pop("$schema", None)  # a path relative to the original recipe's folder
    return best

def plot_history(trials, plan, path) -> str | None:
    """A PNG of each trial's value (complete), the best so far, the last reported value of
    pruned trials and the failed trials; None when no trial has a value."""
    from optuna.trial import TrialState

    complete = [(t.number, t.value) for t in trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)])
              for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    if not complete and not pruned:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if complete:
        ax.scatter(*zip(*complete), color="tab:blue", label="complete", zorder=3)
        better = min if plan.direction == "minimize" else max
        best, line = None, []
        for number, value in sorted(complete):
            best = value if best is None else better(best, value)
            line.append((number, best))
        ax.step(*zip(*line), where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), marker="x", color="tab:gray",
                   label="pruned (last reported)", zorder=3)
    for i, number in enumerate(failed):
        ax.axvline(number, color="tab:orange", linestyle=":", alpha=0.7,
                   label="failed" if i == 0 else None)
    ax.set_xlabel("trial")
    ax.set_ylabel(plan.metric_key)
    ax.set_title(f"optimisation history: {plan.direction} {plan.metric_key}")
    ax.legend()
    fig.tight_layout()
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path

def counts_text(counts: dict) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items()) or "no trials"

def print_search_summary(summary, recipe, plan, output_dir, parent, seconds) -> None:
    best = summary["best"]
    total = sum(summary["counts"].values())
    print()
    print(f"study '{plan.study_name}' done in {duration(seconds)}: {total} trial(s) "
          f"({counts_text(summary['counts'])})")
    print(f"  best: trial {best['number']}, {plan.metric_key}={best['value']:.4f} "
          f"({describe(best['params'])})")
    for what, path in summary["files"].items():
        print(f"  {what}: {path}")
    if best.get("output_dir"):
        print(f"  best trial's outputs: {best['output_dir']}")
    *given, output_dir_override = best["overrides"]  # the last one: OUTPUT_DIR/best
    command = ["fturun", recipe.path, *[o for o in given if not o.startswith(
        ("search.", "training.output_dir="))], output_dir_override, "--no-search"]
    print(f"  train it again: {shlex.join(command)}")
    if parent.run_id:
        print(f"  MLflow: parent run {parent.run_id} (experiment {parent.experiment_id}) at "
              f"{parent.tracking_uri}; best trial's run {best.get('mlflow_run_id')}")
