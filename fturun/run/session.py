"""One run lifecycle, shared by ``fturun RECIPE``, ``fturun check`` and every search trial.

:class:`RunSession` takes a validated recipe through build -> callbacks -> Trainer -> train ->
graceful stop -> evaluate -> predict -> samples -> save -> log. What differs between a run, a
check and a trial is only what the session is given (its output folder, its tracker, its stop,
extra callbacks such as a trial's pruning report, hooks after training and evaluation), never a
copy of the steps. Whoever opens a tracker closes it (:func:`closing` maps the outcome to the
MLflow status), so a trial can tag its run before it is closed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from ..core.dist import is_main_process, quiet_off_main
from ..core.errors import RecipeRuntimeError
from ..core.io import read_json
from ..data import dataset_inputs
from ..engine.distributed import EngineReport
from ..plan.for_run import plan_metrics, start_plan
from ..plan.measure import PeakMemory
from ..plan.text import plan_record
from ..tracking import NullTracker, Tracker, check_recipe_store, flatten, log_run_results
from ..tracking.links import experiment_link, run_link
from .batch_view import show_batch as show_batch_view
from .build import build_run, check_before_loading, default_output_dir, make_trainer
from .checkpoints import (
    CompleteMarker,
    check_run_start,
    other_run_outputs,
    remove_untrained_records,
    run_identity,
    start_fresh,
    train_from,
)
from .generation_eval import add_generation_eval
from .lock import FolderLock
from .metric_probe import check_metrics
from .modelinfo import count_parameters
from .outcome import closing, faults_as_advice, oom_as_advice
from .outputs import PREDICTIONS_FILE, save_outputs, write_results, write_samples
from .progress import fit_progress_to_console
from .report import print_check_result, print_plan, print_summary
from .resume_loss import ResumedTrainLoss
from .stop import GracefulStop
from .timing import CheckProbe, FirstStepClock

#: rows per split that ``fturun check`` builds and runs on, and its optimizer steps
CHECK_ROWS = 16
CHECK_STEPS = 2

@dataclass
class RunResult:
    """What a finished session produced."""

    metrics: dict = field(default_factory=dict)  # "train", "eval", "test" -> metrics
    saved: dict = field(default_factory=dict)  # what -> folder
    trainer: Any = None


class RunSession:
    """One run of one recipe (see the module docstring). The caller enters ``stop`` (the
    signal handlers) and owns ``tracker``; ``resume`` is a checkpoint folder (resolved)."""

    def __init__(self, recipe, registry, output_dir: str | None = None, *, tracker=None,
                 stop: GracefulStop | None = None, resume: str | None = None,
                 callbacks=(), predict_test: bool = True, log_model: bool = True,
                 extra_params: dict | None = None,
                 after_train: Callable[[RunSession], None] | None = None,
                 after_evaluate: Callable[[dict], None] | None = None, checked: bool = False):
        self.recipe, self.registry = recipe, registry
        self.output_dir = output_dir or default_output_dir(recipe)
        self.tracker = tracker if tracker is not None else NullTracker()
        self.stop = stop or GracefulStop()
        self.checkpoint = resume
        self.callbacks = list(callbacks)
        self.predict_test, self.log_model = predict_test, log_model
        self.extra_params = dict(extra_params or {})
        self.after_train, self.after_evaluate = after_train, after_evaluate
        self.checked = checked  # check_before_loading already passed (by run_recipe)
        self.build = self.trainer = self.clock = self.plan = self.peak_memory = None
        self.result = RunResult()

    # -- the steps, in order ------------------------------------------------------------------

    def run(self) -> RunResult:
        """Every step of a run; returns its :class:`RunResult`. A fault of the machine (a
        read-only or full disk, ...) is raised as an :class:`~fturun.core.errors.EnvironmentFault`
        naming the step, the path and what to do."""
        steps = [("loading the data and the model", self.make_trainer),
                 ("starting the run", self.log_start), ("training", self.train),
                 ("training", lambda: self.after_train and self.after_train(self)),
                 ("evaluating", self.evaluate),
                 ("predicting", lambda: self.predict_test and self.predict()),
                 ("generating samples", self.generate_samples), ("saving the model", self.save),
                 ("logging the results", self.log_results)]
        for doing, step in steps:
            with faults_as_advice(self.output_dir, doing):
                step()
        return self.result

    def make_trainer(self):
        """Build the parts, attach the run's callbacks, make the Trainer."""
        self.build = build_run(self.recipe, self.registry, self.output_dir, tracker=self.tracker,
                               checked=self.checked)
        self.plan = start_plan(self.recipe, self.registry, self.build, log=quiet_off_main())
        add_generation_eval(self.build, self.registry)
        self.clock, self.peak_memory = FirstStepClock(), PeakMemory()
        engine_report = EngineReport(self.output_dir, self.tracker)
        marker = CompleteMarker(run_identity(self.recipe))
        resumed_loss = ResumedTrainLoss(self.checkpoint) if self.checkpoint else None
        self.build.add_callbacks(resumed_loss, self.tracker.callback(), self.stop.callback(),
                                 self.clock, self.peak_memory, marker, engine_report,
                                 *self.callbacks)
        self.trainer = self.result.trainer = make_trainer(self.build)
        fit_progress_to_console(self.trainer)
        check_metrics(self.trainer, self.build, self.recipe)  # before the first step
        engine_report.trainer = marker.trainer = self.trainer
        engine_report.plan = plan_record(self.plan) if self.plan else None
        engine_report.defaults = self.build.defaults
        return self.trainer

    def log_start(self) -> None:
        """The run's params (flattened recipe, effective TrainingArguments as ``args.*``, extra
        params), parameter counts and dataset inputs."""
        tracker, data = self.tracker, self.recipe.data
        if tracker.run_id:
            link = run_link(tracker.tracking_uri, tracker.experiment_id, tracker.run_id)
            print(f"MLflow run {tracker.run_id} at {link or tracker.tracking_uri}")
        params = flatten(data)
        params.update({f"args.{k}": v for k, v in self.trainer.args.to_dict().items()})
        params.update(self.build.ran_params)  # an optimizer class, a scheduler of a component
        params.update(self.extra_params)
        params.update(plan_record(self.plan) if self.plan else {})
        tracker.log_params(params)
        if self.checkpoint is not None:  # the steps after the checkpoint are logged once
            tracker.continue_from(checkpoint_step(self.checkpoint))
        trainable, total = count_parameters(self.build.model)
        tracker.log_metrics({"trainable_params": trainable, "total_params": total}, 0)
        for name, ref, ds, split in dataset_inputs(data["data"], self.build.splits,
                                                   self.build.context.train_mix):
            tracker.log_input(name, ref, ds, split)  # each split; each source of a mix

    def train(self) -> dict:
        """Train (from the checkpoint when resuming: the folder was checked and cleared by
        :func:`run_recipe`, a trial's is new); a requested stop raises :class:`Interrupted`
        once the checkpoint is saved. Returns the train metrics."""
        train_result = train_from(self.trainer, self.checkpoint)
        if self.stop.requested:
            raise self.stop.exception()
        metrics = dict(train_result.metrics)
        if self.clock.seconds is not None:
            metrics["seconds_to_first_step"] = round(self.clock.seconds, 3)
        if self.clock.median_step_seconds() is not None:
            metrics["median_step_seconds"] = round(self.clock.median_step_seconds(), 4)
        measured = plan_metrics(self.plan, self.peak_memory, self.clock)
        metrics.update(measured)  # plan/* beside measured/*, train_results.json
        self.tracker.log_metrics(measured, self.trainer.state.global_step)
        self.trainer.save_metrics("train", metrics)
        self.trainer.save_state()
        self.result.metrics["train"] = metrics
        return metrics

    def evaluate(self) -> dict | None:
        """The final evaluation on the eval split (None without one). When training ended
        with an evaluation of the weights it ends with, that is the final evaluation: not run
        and logged a second time at the same step (:func:`last_step_evaluation`)."""
        if self.build.splits.get("eval") is None:
            return None
        metrics = last_step_evaluation(self.trainer) or self.trainer.evaluate()
        if self.after_evaluate:
            self.after_evaluate(metrics)
        self.trainer.save_metrics("eval", metrics)
        self.result.metrics["eval"] = metrics
        return metrics

    def predict(self) -> dict | None:
        """Predict on the test split (None without one): metrics, ``test_predictions.jsonl``."""
        if self.build.splits.get("test") is None:
            return None
        prediction = self.trainer.predict(self.build.splits["test"], metric_key_prefix="test")
        metrics = dict(prediction.metrics)
        self.trainer.save_metrics("test", metrics)
        self.tracker.log_metrics(metrics, self.trainer.state.global_step)
        writer = self.build.context.task_record.write_predictions
        if writer is not None and is_main_process():
            writer(prediction, self.build.context, os.path.join(self.output_dir, PREDICTIONS_FILE))
        self.result.metrics["test"] = metrics
        return metrics

    def generate_samples(self) -> list:
        """Generative tasks: a few generations, printed, saved and tracked."""
        context = self.build.context
        if not context.task_record.generates:
            return []
        # every rank generates (ZeRO-3 needs them all); one process prints, writes and logs
        samples = context.task_record.generate_samples(self.trainer.model, self.build.tokenizer,
                                                       context)
        if is_main_process():
            write_samples(samples, self.output_dir, self.tracker)
        return samples

    def save(self) -> dict:
        """The model (or adapter), the resolved recipe and the eval/test results."""
        self.result.saved = save_outputs(self.trainer, self.build, self.recipe.data,
                                         self.output_dir)
        if is_main_process():  # one writer; the other ranks only train and evaluate
            self.results_file = write_results(self.output_dir, self.recipe.data,
                                              self.result.metrics)
        return self.result.saved

    def log_results(self) -> None:
        """End-of-run artifacts: recipe, environment, results, curves, the model if asked."""
        saved = self.result.saved
        model_dir = (saved.get("adapter") or saved.get("model")) if self.log_model else None
        results = getattr(self, "results_file", None)
        log_run_results(self.tracker, self.recipe, self.trainer.state.log_history,
                        self.output_dir, model_dir, results, build=self.build, saved=saved,
                        step=self.trainer.state.global_step)
        if self.tracker.artifact_failures:
            raise ArtifactsNotUploaded(self.tracker, self.output_dir)

    def trained_a_step(self) -> bool:
        """Whether a training step of this session ended (its records are then worth keeping)."""
        return self.clock is not None and self.clock.seconds is not None

    # -- fturun check ---------------------------------------------------------------------------

    def check(self, show_batch: int = 0) -> None:
        """Build every part on a few rows, print the plan of the real run, run
        :data:`CHECK_STEPS` optimizer steps and one eval batch, print the outcome;
        ``show_batch``: first print and write the first N training examples with their trained
        tokens marked (:mod:`fturun.run.batch_view`)."""
        build = self.build = build_run(self.recipe, self.registry, self.output_dir,
                                       check_rows=max(CHECK_ROWS, show_batch),
                                       tracker=self.tracker)
        self.plan = start_plan(self.recipe, self.registry, build, build.real_sizes)
        plan_args = dict(build.args_kwargs)
        build.args_kwargs = check_arguments(build.args_kwargs, self.output_dir)
        probe = CheckProbe()
        build.add_callbacks(probe)
        add_generation_eval(build, self.registry)
        self.trainer = make_trainer(build)
        print_plan(build, build.real_sizes, plan_args, default_output_dir(self.recipe))
        if show_batch:
            show_batch_view(build, self.trainer.data_collator, show_batch,
                            default_output_dir(self.recipe))
        train_result = self.trainer.train()
        eval_metrics = eval_seconds = one_batch = None
        if build.splits.get("eval") is not None:
            batch = self.trainer.args.per_device_eval_batch_size
            one_batch = build.splits["eval"].select(range(min(batch, len(build.splits["eval"]))))
            started = time.monotonic()
            eval_metrics = self.trainer.evaluate(eval_dataset=one_batch)
            eval_seconds = time.monotonic() - started
        print_check_result(build, build.real_sizes, plan_args, train_result, probe,
                           eval_metrics, eval_seconds,
                           len(one_batch) if eval_metrics is not None else 0, CHECK_STEPS)


def last_step_evaluation(trainer) -> dict | None:
    """The metrics of the evaluation logged at the last step when the model still holds the
    weights it evaluated (no best checkpoint loaded in their place); else None."""
    state, args = trainer.state, trainer.args
    best = state.best_model_checkpoint
    if args.load_best_model_at_end and best and \
            os.path.basename(os.path.normpath(best)) != f"checkpoint-{state.global_step}":
        return None
    for entry in reversed(state.log_history):
        if entry.get("step") != state.global_step:
            return None
        if any(key.startswith("eval_") for key in entry):
            return {k: v for k, v in entry.items() if k != "step"}
    return None


def checkpoint_step(checkpoint: str) -> int:
    """The global step a checkpoint was saved at (its ``trainer_state.json``)."""
    state = read_json(os.path.join(checkpoint, "trainer_state.json"), {}) or {}
    return int(state.get("global_step") or 0)


class ArtifactsNotUploaded(RecipeRuntimeError):
    """The run trained and saved everything locally, but the tracking server refused some
    uploads: the MLflow run is not a complete record, so it ends FAILED (exit 1)."""

    def __init__(self, tracker, output_dir: str):
        names = ", ".join(os.path.relpath(p, output_dir) if p.startswith(output_dir) else p
                          for p in tracker.artifact_failures)
        super().__init__(
            f"the MLflow server at {tracker.tracking_uri} refused the upload of {names} (see "
            f"the warning above), so MLflow run {tracker.run_id} is marked FAILED: it lacks "
            f"them. Training finished and every output is complete in {output_dir}; check "
            "the server's artifact store (its disk, permissions), then run the recipe again "
            "or log the files yourself with 'mlflow artifacts log-artifacts --run-id "
            f"{tracker.run_id} --local-dir PATH'")


def check_arguments(args_kwargs: dict, output_dir: str) -> dict:
    """The recipe's TrainingArguments cut down for ``check``: a few steps, logging every step,
    nothing reported or pushed. With evaluation, strategies that satisfy the recipe's callbacks
    and ``load_best_model_at_end``; the check's probe keeps the Trainer from evaluating or
    saving, and the check evaluates one batch itself."""
    args = dict(args_kwargs)
    args.update(output_dir=output_dir, max_steps=CHECK_STEPS, report_to="none",
                logging_steps=1, push_to_hub=False)
    if args.get("eval_strategy", "no") != "no":
        args.update(eval_strategy="steps", eval_steps=10**9, save_strategy="steps",
                    save_steps=10**9)
    else:
        args.update(save_strategy="no", load_best_model_at_end=False)
    return args


# --------------------------------------------------------------------------------------------
# the commands' entry points


def run_recipe(recipe, registry, resume=None, overwrite=False) -> int:
    """``fturun RECIPE``: train, evaluate (and predict on a test split), save, track, print a
    summary. ``resume``: ``"latest"`` or a checkpoint folder; ``overwrite`` (or the recipe's
    ``output.overwrite``): replace another run's outputs in the folder. The run holds its
    output folder's lock throughout (:class:`~fturun.run.lock.FolderLock`; under a launcher rank 0
    holds it). Returns the exit code (0); failures raise
    :class:`~fturun.core.errors.FturunError`."""
    from ..plugin.manager import default_plugins

    started = time.monotonic()
    output_dir = default_output_dir(recipe)
    with FolderLock(output_dir) if is_main_process() else nullcontext():
        start = check_run_start(recipe, output_dir, resume, overwrite)
        checkpoint = start.checkpoint
        if start.nothing_to_do:
            quiet_off_main()(start.nothing_to_do)
            return 0
        # a recipe this machine cannot run, or a store that cannot track it, is refused
        # before anything is cleared or tracked
        check_before_loading(recipe)
        check_recipe_store(recipe)
        if checkpoint is None and is_main_process():
            start_fresh(output_dir, recipe.data, start.replacing)
        kept = set(other_run_outputs(output_dir))
        # the tracking server is checked before anything heavy is loaded
        tracker = Tracker.open(recipe, output_dir, resume=checkpoint is not None,
                               plugins=default_plugins().plugins)
        stop = GracefulStop()
        session = RunSession(recipe, registry, output_dir, tracker=tracker, stop=stop,
                             resume=checkpoint, checked=True)
        try:
            with oom_as_advice(), closing(tracker), stop:
                result = session.run()
        except BaseException:
            if checkpoint is None and is_main_process() and not session.trained_a_step():
                remove_untrained_records(output_dir, kept)
            raise
    if not is_main_process():
        return 0
    print_summary(result.metrics, result.saved, output_dir, time.monotonic() - started,
                  result.trainer)
    if tracker.run_id:
        print(f"  MLflow run: {tracker.run_id} (experiment {tracker.experiment_id}) at "
              f"{tracker.tracking_uri}")
        link = run_link(tracker.tracking_uri, tracker.experiment_id, tracker.run_id)
        if link:
            print(f"  open it: {link}")
            print(f"  its experiment: "
                  f"{experiment_link(tracker.tracking_uri, tracker.experiment_id)}")
    return 0


def check_recipe(recipe, registry, show_batch: int = 0) -> int:
    """``fturun check``: build every part on a few rows, print the plan of the real run (sizes,
    labels, model, parameters, batch size, steps, a time estimate), then run two optimizer
    steps and one eval batch in a temporary folder: nothing is saved, nothing tracked (the
    context's tracker is a :class:`~fturun.tracking.NullTracker`); ``--show-batch N`` writes
    only ``check_batch.jsonl`` to the output folder. Returns the exit code (0)."""
    with oom_as_advice(), tempfile.TemporaryDirectory(prefix="fturun-check-") as tmp:
        RunSession(recipe, registry, tmp).check(show_batch)
    return 0
