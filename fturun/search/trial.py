"""One trial of a study: the trial's values set in a copy of the recipe, validated, then run by
the same :class:`~fturun.run.session.RunSession` as ``fturun RECIPE`` — given a nested MLflow run,
the study's graceful stop and a pruning report, and nothing else of its own. A trial the pruner
stops is recorded as pruned; one that raises, or whose eval loss or metric turns NaN, as failed,
and the study goes on."""

from __future__ import annotations

import gc
import math
import os
import shutil
import signal
import time
import traceback

from ..core.errors import FturunError, Interrupted, RecipeRuntimeError
from ..core.io import write_text
from ..engine.hardware import release_cuda_memory
from ..run.outcome import OOM_ADVICE, close_status
from ..run.session import RunSession
from ..schema import validate_recipe
from ..tracking import NullTracker, Tracker
from .plan import describe, recipe_with, suggest
from .study import counted_trials


class TrialFailed(Exception):
    """A trial that failed (an exception, a NaN loss or metric): recorded as failed (Optuna FAIL,
    MLflow FAILED) and the study goes on."""


class MetricMissing(RecipeRuntimeError):
    """The search metric is not among the eval metrics: every trial would fail, so the study
    stops."""


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
            missing_metric(metrics, metric_key)
            failure = non_finite(metrics, metric_key)
            if failure:
                self.failure = f"{failure} at step {state.global_step}"
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


def missing_metric(metrics: dict, metric_key: str) -> None:
    """Raise :class:`MetricMissing` when the eval metrics lack the search metric."""
    if metric_key not in metrics:
        shown = ", ".join(sorted(k for k in metrics if not k.endswith(("runtime", "per_second"))))
        raise MetricMissing(f"search.metric: the eval metrics have no '{metric_key}'; they "
                            f"are: {shown}")


def non_finite(metrics: dict, metric_key: str) -> str | None:
    """``"eval_loss is nan"`` when the eval loss or the search metric is NaN or infinite."""
    for key in dict.fromkeys(("eval_loss", metric_key)):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            return f"{key} is {value}"
    return None


class Objective:
    """Optuna's objective: one trial = one fresh :class:`RunSession` of the recipe with the
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
        self.started[trial.number] = time.monotonic()
        trial_dir = os.path.join(self.output_dir, f"trial-{trial.number}")
        shutil.rmtree(trial_dir, ignore_errors=True)  # a trial number is new in its study
        os.makedirs(trial_dir)
        trial.set_user_attr("output_dir", trial_dir)
        tracker = NullTracker()
        try:
            values = suggest(trial, self.plan)
            print(f"\ntrial {trial.number}: {describe(values)}", flush=True)
            trial_recipe = recipe_with(self.recipe, values)
            tracker = self._open_tracker(trial, trial_recipe, trial_dir)
            value = self._run(trial, trial_recipe, trial_dir, tracker)
        except BaseException as exc:
            outcome = self._record_failure(exc, trial, trial_dir, tracker)
            if outcome is exc:
                raise
            raise outcome from exc
        finally:
            gc.collect()
            release_cuda_memory()
        tracker.set_tags({"fturun.trial_state": "complete"})
        tracker.close("FINISHED")
        return value

    def _open_tracker(self, trial, trial_recipe, trial_dir):
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

    def _run(self, trial, trial_recipe, trial_dir, tracker) -> float:
        import optuna

        problems = validate_recipe(trial_recipe, self.registry)
        if problems:
            raise RecipeRuntimeError("the trial's recipe is not valid: "
                                     + "; ".join(str(p) for p in problems))
        report = PruningCallback(trial, self.plan.metric_key)

        def after_train(session):
            if report.failure:
                raise TrialFailed(report.failure)
            if report.pruned_at is not None:
                step, value = report.last
                session.log_results()
                tracker.set_tags({"fturun.trial_state": "pruned",
                                  "fturun.pruned_at_step": str(step)})
                trial.set_user_attr("pruned_at_step", step)
                raise optuna.TrialPruned(f"pruned at step {step} ({self.plan.metric_key}="
                                         f"{value:.4g})")
            report.active = False  # the final evaluation is not an intermediate value

        def after_evaluate(metrics):
            missing_metric(metrics, self.plan.metric_key)
            failure = non_finite(metrics, self.plan.metric_key)
            if failure:
                raise TrialFailed(f"{failure} after training")

        session = RunSession(trial_recipe, self.registry, trial_dir, tracker=tracker,
                             stop=self.stop, callbacks=[report], predict_test=False,
                             log_model=False, extra_params={"trial.number": trial.number},
                             after_train=after_train, after_evaluate=after_evaluate)
        result = session.run()
        return float(result.metrics["eval"][self.plan.metric_key])

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

    def _record_failure(self, exc, trial, trial_dir, tracker) -> BaseException:
        """Close the trial's run for ``exc`` and return what to raise to Optuna: the pruning
        itself, the interruption or a missing metric (which stop the study), else
        :class:`TrialFailed` (the study goes on)."""
        import optuna

        if isinstance(exc, optuna.TrialPruned):
            tracker.close("KILLED")
            return exc
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            tracker.set_tags({"fturun.trial_state": "interrupted"})
            tracker.close("KILLED")
            if isinstance(exc, Interrupted) and self.stop.requested:
                name = signal.Signals(self.stop.requested).name
                return Interrupted(f"stopped by {name} during trial {trial.number}; with "
                                   "search.storage, the same command continues the study",
                                   exc.exit_code)
            return exc
        tracker.set_tags({"fturun.trial_state": "failed"})
        if isinstance(exc, MetricMissing):
            tracker.close(close_status(exc), error=str(exc))
            return exc
        message = failure_message(exc)
        if not isinstance(exc, (FturunError, TrialFailed)):
            path = write_text(os.path.join(trial_dir, "traceback.txt"),
                              "".join(traceback.format_exception(exc)))
            tracker.log_artifact(path)
        trial.set_user_attr("error", message[:2000])
        tracker.close("FAILED", error=message)
        return TrialFailed(message)


def failure_message(exc) -> str:
    """What a failed trial's record says."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return OOM_ADVICE
    if isinstance(exc, (FturunError, TrialFailed)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
