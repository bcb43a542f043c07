"""search (layer 5): hyperparameter search from a recipe's ``search`` section, with Optuna.

Every trial is a fresh build of the recipe with the trial's values set at their dotted keys (the
same logic as command-line overrides), validated like any recipe, then run by the same
:class:`~fturun.run.session.RunSession` as ``fturun RECIPE`` (:mod:`.trial`). Nothing is shared
between trials but the data cache, so TrainingArguments *and* component params (an adapter's
rank, a loss's weights, the model itself) can vary. ``Trainer.hyperparameter_search`` is not
used: it re-initialises the model through ``model_init`` only, so it cannot vary the adapter,
the collator, the loss or the data a recipe builds, and its MLflow reporting would bypass
fturun's tracking.

- :mod:`.plan`: the ``search`` section resolved, suggestions, a trial's recipe;
- :mod:`.study`: Optuna storage, study, sampler, pruner;
- :mod:`.parent`: the study's MLflow parent run, shared by every process of the study;
- :mod:`.trial`: one trial, its pruning report, its outcome;
- :mod:`.results`: trials.json, best_params.json, best_recipe.json, the plot, the summary.

``search.storage`` (an Optuna RDB URL, or a journal file path ending ``.log``) lets several
processes, on one machine or several, work on one study: the study is loaded if it exists, the
first process creates the parent run and the others nest their trials under it, and every process
stops once the study holds ``n_trials`` trials (finished or running).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time

from ..core.dist import world_size
from ..core.errors import RecipeRuntimeError, UsageError
from ..run.build import check_before_loading, default_output_dir
from ..run.lock import FolderLock
from ..run.outcome import close_status
from ..run.stop import GracefulStop
from ..tracking import NullTracker
from .parent import check_tracking_reachable, open_parent
from .plan import SearchPlan, grid_size
from .results import counts_text, finish_study, print_search_summary
from .study import counted_trials, open_storage, open_study, quiet_optuna, safe_url
from .trial import Objective, TrialFailed

__all__ = ["run_search", "SearchPlan", "grid_size", "open_storage", "safe_url"]

TRIAL_FOLDER = re.compile(r"trial-\d+")


def run_search(recipe, registry, overwrite: bool = False) -> int:
    """Run the study the recipe's ``search`` section describes, print the best trial and where
    everything went. The study holds its output folder's lock (shared by the workers of one
    ``search.storage`` study); ``overwrite`` (or ``output.overwrite``) lets a new in-memory
    study replace an earlier study's trials there. Returns 0 when at least one trial
    completed; failures raise :class:`~fturun.core.errors.FturunError`."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise RecipeRuntimeError("search needs Optuna: pip install 'optuna>=3.5'") from None

    if world_size() > 1:
        raise RecipeRuntimeError(
            "search: a study runs its trials one process each; start several 'fturun search' "
            "workers with search.storage instead of a distributed launch (torchrun, "
            "accelerate, deepspeed)")
    started = time.monotonic()
    plan = SearchPlan.from_recipe(recipe)
    output_dir = default_output_dir(recipe)
    overwrite = overwrite or bool((recipe.data.get("output") or {}).get("overwrite"))
    with study_folder(plan, output_dir, overwrite):
        return _search(recipe, registry, plan, output_dir, started)


def study_folder(plan, output_dir: str, overwrite: bool) -> FolderLock:
    """The study's hold on its output folder: exclusive for a study in memory, shared by the
    workers of a ``search.storage`` study. A new in-memory study numbers its trials from 0:
    trial folders of an earlier study there are refused unless ``overwrite`` (then removed)."""
    study = None if plan.storage is None else f"{plan.study_name} in {safe_url(plan.storage)}"
    lock = FolderLock(output_dir, study=study).acquire()
    trials = sorted(name for name in os.listdir(output_dir)
                    if TRIAL_FOLDER.fullmatch(name)) if plan.storage is None else []
    if trials and not overwrite:
        lock.release()
        shown = ", ".join(trials[:5]) + (", ..." if len(trials) > 5 else "")
        raise UsageError(
            f"{output_dir} holds the trials of an earlier search ({shown}); this study keeps "
            "no storage, so its trials would replace them. Train into another "
            "training.output_dir, keep studies in a search.storage (the same command then "
            "continues one), or replace them with --overwrite")
    for name in trials:
        shutil.rmtree(os.path.join(output_dir, name))
    if trials:
        print(f"replacing the earlier search in {output_dir} (overwrite): removed "
              f"{len(trials)} trial folder(s)")
    return lock


def _search(recipe, registry, plan, output_dir: str, started: float) -> int:
    """The study, once its folder is held."""
    from ..plugin.manager import default_plugins

    check_tracking_reachable(recipe)  # before the study exists and before anything heavy
    check_before_loading(recipe)  # a recipe this machine cannot run: refused, no parent run
    quiet_optuna()
    study, created = open_study(plan, open_storage(plan.storage))
    if created:
        for point in plan.enqueue:
            study.enqueue_trial(plan.encode(point), skip_if_exists=True)
    plugins = default_plugins().plugins
    parent = open_parent(study, created, recipe, plan, output_dir, plugins)
    _print_study(plan, created, parent)
    stop = GracefulStop()
    objective = Objective(recipe, registry, plan, output_dir, parent, stop, plugins)
    try:
        with stop:
            _optimize(study, plan, objective)
    except BaseException as exc:
        try:
            finish_study(study, recipe, plan, output_dir, parent)
        except Exception as finish_exc:  # noqa: BLE001 - the first error is the one to report
            print(f"warning: could not write the study's results ({finish_exc})",
                  file=sys.stderr)
        status = close_status(exc)
        parent.close(status, error=f"{type(exc).__name__}: {exc}" if status == "FAILED"
                     else None)
        raise
    summary = finish_study(study, recipe, plan, output_dir, parent)
    _close_parent(summary, parent, output_dir)
    print_search_summary(summary, recipe, plan, output_dir, parent, time.monotonic() - started)
    return 0


def _print_study(plan, created: bool, parent) -> None:
    print(f"study '{plan.study_name}' ({'created' if created else 'joined'}, "
          f"{safe_url(plan.storage)}): {plan.direction} {plan.metric_key}, "
          + (f"{plan.n_trials} trials" if plan.n_trials else "no trial limit")
          + (f", at most {plan.timeout_s / 60:g} min" if plan.timeout_s else "")
          + f", sampler {plan.sampler}, pruner {plan.pruner}")
    if parent.run_id:
        print(f"MLflow parent run {parent.run_id} at {parent.tracking_uri}")


def _optimize(study, plan, objective) -> None:
    if plan.n_trials is not None and counted_trials(study) >= plan.n_trials:
        print(f"the study already holds {counted_trials(study)} trial(s) of "
              f"{plan.n_trials}: nothing to run")
        return
    study.optimize(objective, n_trials=plan.n_trials, timeout=plan.timeout_s,
                   catch=(TrialFailed,), callbacks=[objective.after_trial])


def _close_parent(summary: dict, parent, output_dir: str) -> None:
    """FINISHED when no other process still runs trials (the last one to finish closes it);
    no completed trial at all is an error."""
    running = summary["counts"].get("running", 0)
    if summary["best"] is None:
        message = (f"search: no trial completed ({counts_text(summary['counts'])}); see the "
                   f"failed trials' errors above and in {output_dir}/trial-N/")
        if not running:
            parent.close("FAILED", error=message)
        raise RecipeRuntimeError(message)
    if running:
        if not isinstance(parent, NullTracker):
            parent.set_tags({"fturun.study_state": "running in other processes"})
    else:
        parent.set_tags({"fturun.study_state": "finished"})
        parent.close("FINISHED")
