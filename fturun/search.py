"""Hyperparameter search from a recipe's ``search`` section, with Optuna.

Every trial is a fresh build of the recipe with the trial's values set at their dotted keys (the
same logic as command-line overrides), validated like any recipe, then built by the runner
(datasets from the tokenization cache, model, adapter, ..., Trainer) and trained. Nothing is
shared between trials but the data cache, so TrainingArguments *and* component params (an
adapter's rank, a loss's weights, the model itself) can vary, and a model is never reused across
trials. ``Trainer.hyperparameter_search`` is not used: it re-initialises the model through
``model_init`` only, so it cannot vary the adapter, the collator, the loss or the data a recipe
builds, and its MLflow reporting would bypass fturun's tracking.

Intermediate eval metrics are reported to Optuna from a TrainerCallback; a trial the pruner
stops is recorded as pruned. A trial that raises, or whose eval loss or metric turns NaN, is
recorded as failed and the study goes on.

MLflow: one parent run for the study and a nested child run per trial (``mlflow.parentRunId``).
The parent gets the search config, the best value per trial, the best trial's params, the best
recipe and a plot of the optimisation history; each child gets the trial's recipe and params, its
step-wise metrics, and ``fturun.trial_state`` (complete/pruned/failed) with the run status
FINISHED/KILLED/FAILED.

``search.storage`` (an Optuna RDB URL, or a journal file path ending ``.log``) lets several
processes, on one machine or several, work on one study: the study is loaded if it exists, the
first process creates the parent run and the others nest their trials under it, and every process
stops once the study holds ``n_trials`` trials (finished or running).
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import os
import random
import re
import shlex
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field

from .errors import FturunError, Interrupted, RecipeRuntimeError
from .recipe import Recipe, apply_override

#: study user attributes: the MLflow parent run (shared by every process of the study)
PARENT_ATTR = "fturun.mlflow_parent_run_id"
URI_ATTR = "fturun.mlflow_tracking_uri"
#: metrics that are better when lower (the default direction is minimize for these)
LOWER_IS_BETTER = ("loss", "perplexity")
JOURNAL_SUFFIXES = (".log", ".journal")
SQLITE_TIMEOUT_S = 60  # how long a SQLite writer waits for another process's lock
HEARTBEAT_S = 60  # RDB storages: a running trial beats this often ...
GRACE_S = 180  # ... and is failed when a process sees it silent this long (its worker died)
PARENT_WAIT_S = 60  # a joining process waits this long for the creator's parent run
OPEN_TRIES = 6  # concurrent processes creating one SQLite study's tables may collide


class TrialFailed(Exception):
    """A trial that failed (an exception, a NaN loss or metric): recorded as failed (Optuna FAIL,
    MLflow FAILED) and the study goes on."""


class MetricMissing(RecipeRuntimeError):
    """The search metric is not among the eval metrics: every trial would fail, so the study
    stops."""


# --------------------------------------------------------------------------------------------
# the search section, resolved


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
    def from_recipe(cls, recipe) -> "SearchPlan":
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
                   study_name=search.get("study_name") or _stem(recipe.path),
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


# --------------------------------------------------------------------------------------------
# Optuna: storage, study, sampler, pruner


def safe_url(url: str | None) -> str:
    """A storage URL without its password."""
    if not url:
        return "in-memory"
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(url: str | None):
    """The Optuna storage for ``search.storage`` (``$VARS`` expanded): None (in memory), a
    JournalStorage for a file path ending ``.log``/``.journal``, else an RDBStorage (SQLite waits
    up to a minute for another process's lock; a running trial beats a heartbeat so that a dead
    worker's trial is failed, not left running)."""
    if not url:
        return None
    import optuna

    url = os.path.expandvars(url)
    if "://" not in url:
        from optuna.storages import JournalStorage

        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:  # optuna < 4
            from optuna.storages import JournalFileStorage as JournalFileBackend
        path = os.path.abspath(os.path.expanduser(url))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:" and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(OPEN_TRIES):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S)
        except ImportError as exc:
            raise RecipeRuntimeError(f"search.storage {safe_url(url)}: the database driver is "
                                     f"not installed ({exc}); pip install it") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy errors: tables being created
            if attempt == OPEN_TRIES - 1 or not _is_db_error(exc):
                raise RecipeRuntimeError(f"search.storage {safe_url(url)}: cannot open it "
                                         f"({type(exc).__name__}: {str(exc)[:300]})") from None
            time.sleep(0.2 + random.random() * attempt)
    raise AssertionError("unreachable")


def _is_db_error(exc) -> bool:
    return type(exc).__module__.startswith("sqlalchemy")


def make_sampler(plan: SearchPlan, seed: int):
    import optuna

    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.sampler == "grid":
        grid = {key: [json.dumps(v) for v in grid_values(entry)] if key in plan.encoded
                else grid_values(entry) for key, entry in plan.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(plan: SearchPlan):
    import optuna

    if plan.pruner == "none":
        return optuna.pruners.NopPruner()
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, plan.warmup_steps))
    if plan.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=plan.warmup_steps or "auto")
    return optuna.pruners.MedianPruner(n_startup_trials=plan.startup_trials,
                                       n_warmup_steps=plan.warmup_steps)


def open_study(plan: SearchPlan, storage):
    """Create the study, or load it when another process (or an earlier run) created it.
    Returns ``(study, created)``. The creator's sampler is seeded with the search seed (a study
    in one process is reproducible); a joining process's with a seed of its own, so that workers
    do not repeat each other's samples."""
    import optuna

    pruner = make_pruner(plan)
    if storage is None:
        return optuna.create_study(direction=plan.direction, pruner=pruner,
                                   sampler=make_sampler(plan, plan.seed)), True
    for attempt in range(OPEN_TRIES):
        try:
            study = optuna.create_study(storage=storage, study_name=plan.study_name,
                                        direction=plan.direction, pruner=pruner,
                                        sampler=make_sampler(plan, plan.seed))
            return study, True
        except optuna.exceptions.DuplicatedStudyError:
            joined_seed = (plan.seed + os.getpid() * 7919 + time.time_ns()) % (2**31)
            study = optuna.load_study(study_name=plan.study_name, storage=storage,
                                      sampler=make_sampler(plan, joined_seed), pruner=pruner)
            if study.direction.name.lower() != plan.direction:
                raise RecipeRuntimeError(
                    f"search: study '{plan.study_name}' in {safe_url(plan.storage)} was created "
                    f"to {study.direction.name.lower()}, this recipe says {plan.direction}; "
                    "use another search.study_name") from None
            return study, False
        except Exception as exc:  # noqa: BLE001
            if attempt == OPEN_TRIES - 1 or not _is_db_error(exc):
                raise
            time.sleep(0.2 + random.random() * attempt)
    raise AssertionError("unreachable")


def counted_trials(study) -> int:
    """Trials that count toward ``n_trials``: finished or running (in any process)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)))


class _HideFailedTrialLogs(logging.Filter):
    """fturun prints each failed trial itself (without a traceback)."""

    def filter(self, record):
        return not re.match(r"Trial \d+ failed with", str(record.msg))


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _HideFailedTrialLogs) for f in logger.filters):
        logger.addFilter(_HideFailedTrialLogs())


# --------------------------------------------------------------------------------------------
# the study


def run_search(recipe, registry) -> int:
    """Run the study the recipe's ``search`` section describes, print the best trial and where
    everything went. Returns 0 when at least one trial completed; failures raise
    :class:`~fturun.errors.FturunError`."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise RecipeRuntimeError("search needs Optuna: pip install 'optuna>=3.5'") from None

    from .plugins import default_plugins
    from .runner import GracefulStop, default_output_dir
    from .tracking import NullTracker

    from .launch import world_size

    if world_size() > 1:
        raise RecipeRuntimeError(
            "search: a study runs its trials one process each; start several 'fturun search' "
            "workers with search.storage instead of a distributed launch (torchrun, "
            "accelerate, deepspeed)")
    started = time.monotonic()
    plan = SearchPlan.from_recipe(recipe)
    output_dir = default_output_dir(recipe)
    os.makedirs(output_dir, exist_ok=True)
    _check_tracking_reachable(recipe)  # before the study exists and before anything heavy
    quiet_optuna()
    storage = open_storage(plan.storage)
    study, created = open_study(plan, storage)
    if created:
        for point in plan.enqueue:
            study.enqueue_trial(plan.encode(point), skip_if_exists=True)
    plugins = default_plugins().plugins
    parent = open_parent(study, created, recipe, plan, output_dir, plugins)
    print(f"study '{plan.study_name}' ({'created' if created else 'joined'}, "
          f"{safe_url(plan.storage)}): {plan.direction} {plan.metric_key}, "
          + (f"{plan.n_trials} trials" if plan.n_trials else "no trial limit")
          + (f", at most {plan.timeout_s / 60:g} min" if plan.timeout_s else "")
          + f", sampler {plan.sampler}, pruner {plan.pruner}")
    if parent.run_id:
        print(f"MLflow parent run {parent.run_id} at {parent.tracking_uri}")

    stop = GracefulStop()
    objective = Objective(recipe, registry, plan, output_dir, parent, stop, plugins)
    try:
        with stop:
            if plan.n_trials is not None and counted_trials(study) >= plan.n_trials:
                print(f"the study already holds {counted_trials(study)} trial(s) of "
                      f"{plan.n_trials}: nothing to run")
            else:
                study.optimize(objective, n_trials=plan.n_trials, timeout=plan.timeout_s,
                               catch=(TrialFailed,), callbacks=[objective.after_trial])
    except BaseException as exc:
        try:
            finish_study(study, recipe, plan, output_dir, parent)
        except Exception as finish_exc:  # noqa: BLE001 - the first error is the one to report
            print(f"warning: could not write the study's results ({finish_exc})",
                  file=sys.stderr)
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            parent.close("KILLED")
        else:
            parent.close("FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    summary = finish_study(study, recipe, plan, output_dir, parent)
    running = summary["counts"].get("running", 0)
    if summary["best"] is None:
        message = (f"search: no trial completed ({_counts_text(summary['counts'])}); see the "
                   f"failed trials' errors above and in {output_dir}/trial-N/")
        if not running:
            parent.close("FAILED", error=message)
        raise RecipeRuntimeError(message)
    if running:
        # other processes are still working on the study: the last one to finish closes it
        if not isinstance(parent, NullTracker):
            parent.set_tags({"fturun.study_state": "running in other processes"})
    else:
        parent.set_tags({"fturun.study_state": "finished"})
        parent.close("FINISHED")
    print_search_summary(summary, recipe, plan, output_dir, parent, time.monotonic() - started)
    return 0


def _check_tracking_reachable(recipe) -> None:
    from .launch import is_main_process
    from .tracking import check_reachable, default_tracking_uri

    settings = recipe.data.get("tracking") or {}
    if settings.get("enabled", True) and is_main_process():
        check_reachable(settings.get("tracking_uri") or default_tracking_uri())


def open_parent(study, created, recipe, plan, output_dir, plugins):
    """The study's MLflow parent run: created by the process that created the study (its id kept
    in the study's user attributes), reattached by the processes that join it."""
    from .tracking import NullTracker, Tracker, default_tracking_uri, flatten, \
        is_main_process

    settings = recipe.data.get("tracking") or {}
    if not settings.get("enabled", True) or not is_main_process():
        if created:
            study.set_user_attr(PARENT_ATTR, "")
        return NullTracker()
    uri = settings.get("tracking_uri") or default_tracking_uri()
    tracker = None
    if not created:
        run_id = _wait_for_parent(study)
        if run_id and study.user_attrs.get(URI_ATTR) == uri:
            tracker = _attach(run_id, uri, output_dir)
    if tracker is None:
        tracker = Tracker.open(recipe, output_dir, resume=False, plugins=plugins,
                               run_name=settings.get("run_name") or plan.study_name,
                               extra_tags={"fturun.search": "true",
                                           "fturun.study": plan.study_name,
                                           "fturun.study_storage": safe_url(plan.storage)})
        if created or not study.user_attrs.get(PARENT_ATTR):
            study.set_user_attr(URI_ATTR, uri)
            study.set_user_attr(PARENT_ATTR, tracker.run_id)
    params = flatten(recipe.data)
    params.update({"search.resolved.metric": plan.metric_key,
                   "search.resolved.direction": plan.direction,
                   "search.resolved.n_trials": plan.n_trials,
                   "search.resolved.study_name": plan.study_name,
                   "search.resolved.storage": safe_url(plan.storage),
                   "search.resolved.pruner_startup_trials": plan.startup_trials})
    tracker.log_params(params)
    return tracker


def _wait_for_parent(study) -> str | None:
    """The parent run id the study's creator stored ("" when it tracks nothing), waiting for it
    a while when the creator is starting at the same time."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while True:
        attrs = study.user_attrs
        if PARENT_ATTR in attrs:
            return attrs[PARENT_ATTR] or None
        if time.monotonic() > deadline:
            print(f"note: the study has no MLflow parent run after {PARENT_WAIT_S}s; this "
                  "process starts one", file=sys.stderr)
            return None
        time.sleep(0.5)


def _attach(run_id, uri, output_dir):
    from mlflow.tracking import MlflowClient

    from .tracking import RUN_FILE, Tracker

    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
        client.update_run(run_id, status="RUNNING")
    except Exception as exc:  # noqa: BLE001 - the run was deleted, or another server
        print(f"note: cannot reattach the study's MLflow run {run_id} ({exc}); starting one",
              file=sys.stderr)
        return None
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, RUN_FILE), "w") as f:
        json.dump({"run_id": run_id, "experiment_id": run.info.experiment_id,
                   "tracking_uri": uri}, f)
    return Tracker(client, run_id, run.info.experiment_id, uri, output_dir)


# --------------------------------------------------------------------------------------------
# one trial


def PruningCallback(trial, metric_key: str):  # noqa: N802 - used like a class
    """Reports each evaluation's ``metric_key`` to Optuna; stops training when the pruner says
    so (``pruned_at``) or when the eval loss or the metric is NaN/inf (``failure``)."""
    from transformers import TrainerCallback

    class OptunaReport(TrainerCallback):
        def __init__(self):
            self.active = True
            self.pruned_at = None
            self.failure = None
            self.last = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not self.active or not metrics:
                return control
            if metric_key not in metrics:
                shown = ", ".join(sorted(k for k in metrics if not k.endswith(
                    ("runtime", "per_second"))))
                raise MetricMissing(f"search.metric: the eval metrics have no '{metric_key}'; "
                                    f"they are: {shown}")
            for key in dict.fromkeys(("eval_loss", metric_key)):
                value = metrics.get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    self.failure = f"{key} is {value} at step {state.global_step}"
                    control.should_training_stop = True
                    return control
            value = float(metrics[metric_key])
            self.last = (state.global_step, value)
            trial.report(value, state.global_step)
            if trial.should_prune():
                self.pruned_at = state.global_step
                control.should_training_stop = True
            return control

    return OptunaReport()


class Objective:
    """Optuna's objective: one trial = one fresh build and training run of the recipe with the
    trial's values, tracked as a nested MLflow run."""

    def __init__(self, recipe, registry, plan, output_dir, parent, stop, plugins):
        self.recipe = recipe
        self.registry = registry
        self.plan = plan
        self.output_dir = output_dir
        self.parent = parent
        self.stop = stop
        self.plugins = plugins
        self.started = {}

    def __call__(self, trial) -> float:
        import optuna

        self.started[trial.number] = time.monotonic()
        trial_dir = os.path.join(self.output_dir, f"trial-{trial.number}")
        shutil.rmtree(trial_dir, ignore_errors=True)  # a trial number is new in its study
        os.makedirs(trial_dir)
        trial.set_user_attr("output_dir", trial_dir)
        tracker = None
        try:
            values = suggest(trial, self.plan)
            print(f"\ntrial {trial.number}: {describe(values)}", flush=True)
            trial_recipe = recipe_with(self.recipe, values)
            tracker = self._open_tracker(trial, trial_recipe, trial_dir)
            return self._train(trial, trial_recipe, trial_dir, tracker)
        except optuna.TrialPruned:
            raise
        except (KeyboardInterrupt, Interrupted):
            if tracker is not None:
                tracker.set_tags({"fturun.trial_state": "interrupted"})
                tracker.close("KILLED")
            raise
        except MetricMissing as exc:
            if tracker is not None:
                tracker.set_tags({"fturun.trial_state": "failed"})
                tracker.close("FAILED", error=str(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - any failure fails this trial only
            message = _failure_message(exc)
            if not isinstance(exc, (FturunError, TrialFailed)):
                with open(os.path.join(trial_dir, "traceback.txt"), "w") as f:
                    f.write("".join(traceback.format_exception(exc)))
            trial.set_user_attr("error", message[:2000])
            if tracker is not None:
                tracker.set_tags({"fturun.trial_state": "failed"})
                tracker.log_artifact(os.path.join(trial_dir, "traceback.txt"))
                tracker.close("FAILED", error=message)
            raise TrialFailed(message) from exc
        finally:
            _release_memory()

    def _open_tracker(self, trial, trial_recipe, trial_dir):
        from .tracking import NullTracker, Tracker

        if isinstance(self.parent, NullTracker):
            return NullTracker()
        tracker = Tracker.open(trial_recipe, trial_dir, resume=False, plugins=self.plugins,
                               run_name=f"trial-{trial.number}",
                               parent_run_id=self.parent.run_id,
                               extra_tags={"fturun.study": self.plan.study_name,
                                           "fturun.trial": str(trial.number)})
        if tracker.run_id:
            trial.set_user_attr("mlflow_run_id", tracker.run_id)
        return tracker

    def _train(self, trial, trial_recipe, trial_dir, tracker) -> float:
        import optuna

        from .runner import build_run, log_run_params, make_trainer, save_outputs, write_json
        from .schema import validate_recipe
        from .tracking import log_run_results

        problems = validate_recipe(trial_recipe, self.registry)
        if problems:
            raise RecipeRuntimeError("the trial's recipe is not valid: "
                                     + "; ".join(str(p) for p in problems))
        build = build_run(trial_recipe, self.registry, trial_dir, tracker=tracker)
        report = PruningCallback(trial, self.plan.metric_key)
        build.trainer_kwargs["callbacks"] = list(build.trainer_kwargs.get("callbacks") or []) + [
            c for c in (tracker.callback(), self.stop.callback(), report) if c]
        trainer = make_trainer(build)
        log_run_params(tracker, trial_recipe.data, trainer, build.model,
                       extra={"trial.number": trial.number})

        trainer.train()
        if self.stop.requested:
            import signal

            name = signal.Signals(self.stop.requested).name
            raise Interrupted(f"stopped by {name} during trial {trial.number}; with "
                              "search.storage, the same command continues the study",
                              128 + self.stop.requested)
        if report.failure:
            raise TrialFailed(report.failure)
        history = trainer.state.log_history
        if report.pruned_at is not None:
            step, value = report.last
            log_run_results(tracker, trial_recipe, history, trial_dir, None, None)
            tracker.set_tags({"fturun.trial_state": "pruned",
                              "fturun.pruned_at_step": str(step)})
            tracker.close("KILLED")
            trial.set_user_attr("pruned_at_step", step)
            raise optuna.TrialPruned(f"pruned at step {step} ({self.plan.metric_key}="
                                     f"{value:.4g})")
        report.active = False
        metrics = trainer.evaluate()
        value = metrics.get(self.plan.metric_key)
        if value is None:
            raise MetricMissing(f"search.metric: the eval metrics have no "
                                f"'{self.plan.metric_key}'; they are: {', '.join(metrics)}")
        for key in dict.fromkeys(("eval_loss", self.plan.metric_key)):
            if isinstance(metrics.get(key), (int, float)) and not math.isfinite(metrics[key]):
                raise TrialFailed(f"{key} is {metrics[key]} after training")
        trainer.save_metrics("eval", metrics)
        save_outputs(trainer, build, trial_recipe.data, trial_dir)
        write_json(os.path.join(trial_dir, "recipe.json"), trial_recipe.data)
        results_file = os.path.join(trial_dir, "eval_results.json")
        write_json(results_file, metrics)
        log_run_results(tracker, trial_recipe, history, trial_dir, None, results_file)
        tracker.set_tags({"fturun.trial_state": "complete"})
        tracker.close("FINISHED")
        return float(value)

    def after_trial(self, study, frozen) -> None:
        """Print the trial's outcome, log it on the parent run, and stop this process once the
        study holds ``n_trials`` trials (counted across every process)."""
        from optuna.trial import TrialState

        seconds = time.monotonic() - self.started.get(frozen.number, time.monotonic())
        key = self.plan.metric_key
        if frozen.state == TrialState.COMPLETE:
            text = f"complete, {key}={frozen.value:.4g}"
            self.parent.log_metrics({"trial_value": frozen.value}, frozen.number)
            self.parent.log_metrics({"best_value": study.best_value}, frozen.number)
        elif frozen.state == TrialState.PRUNED:
            step = frozen.user_attrs.get("pruned_at_step")
            values = frozen.intermediate_values
            text = f"pruned at step {step}" + (f" ({key}={values[step]:.4g})"
                                               if step in values else "")
        else:
            text = f"failed: {frozen.user_attrs.get('error', 'see above')}"
        print(f"trial {frozen.number}: {text} [{seconds:.0f}s]", flush=True)
        if self.plan.n_trials is not None and counted_trials(study) >= self.plan.n_trials:
            study.stop()


def _failure_message(exc) -> str:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        from .runner import OOM_ADVICE

        return OOM_ADVICE
    if isinstance(exc, (FturunError, TrialFailed)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# --------------------------------------------------------------------------------------------
# results


def finish_study(study, recipe, plan, output_dir, parent) -> dict:
    """Write and log the study's results: trials.json, the optimisation history plot, and when a
    trial completed, best_params.json and best_recipe.json (the recipe with the best values and
    without its search section). Returns a summary."""
    from optuna.trial import TrialState

    from .runner import write_json
    from .tracking import log_run_results

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


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items()) or "no trials"


def print_search_summary(summary, recipe, plan, output_dir, parent, seconds) -> None:
    from .runner import _duration

    best = summary["best"]
    total = sum(summary["counts"].values())
    print()
    print(f"study '{plan.study_name}' done in {_duration(seconds)}: {total} trial(s) "
          f"({_counts_text(summary['counts'])})")
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


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0] or "study"
