"""The MLflow run of one recipe run (or one search trial, or a study's parent run): started, or
reattached on ``--resume``; params, tags, step-wise metrics, system metrics
(:mod:`~fturun.tracking.system`), dataset inputs, artifacts; ended as FINISHED, FAILED or KILLED.
The run's MLflow Model is :mod:`~fturun.tracking.model`'s.

A tracking server that goes away mid-run never stops training: every metric is also appended to
``OUTPUT_DIR/metrics.jsonl`` and sent by a thread of its own, a refused call is reported once
and then skipped, and while the server does not answer calls pause between attempts and the
metrics wait to be sent when it answers again. The thread (:mod:`~fturun.tracking.sender`) sends
what accumulated in one request every few seconds."""

from __future__ import annotations

import os
import sys
import threading
import time

from ..core.errors import RecipeRuntimeError, environment_fault
from ..core.io import append_line, read_json, writable_folder, write_json, write_text
from ..core.redaction import redacted_for_upload
from .null import NullTracker
from .params import mlflow_key, param_value, run_tags, tag_value
from .replay import last_steps, logged_steps, trim_metrics_file, unsent
from .sender import METRIC_BATCH, MetricSender
from .settings import (
    EXPERIMENT_TAGS,
    HTTP_DEFAULTS,
    TrackingSettings,
    check_reachable,
    mlflow_client,
)
from .system import SystemMetrics

# HTTP_DEFAULTS is named here for the tests that set it with the pause (OUTAGE_PAUSE)
__all__ = ["HTTP_DEFAULTS", "METRICS_FILE", "OUTAGE_PAUSE", "RUN_FILE", "NullTracker", "Tracker"]

RUN_FILE = "mlflow_run.json"
METRICS_FILE = "metrics.jsonl"
BATCH = 100  # MLflow's limit on params/tags per log_batch
MAX_PENDING = 100_000  # metric values held for a server that is down
OUTAGE_PAUSE = 60.0  # seconds between attempts while the tracking server does not answer
FAILED = object()  # what a failed or skipped tracking call returns
FLUSH_TIMEOUT = 120.0  # seconds the end of a run waits for queued metrics


class Tracker:
    """One MLflow run of a recipe run."""

    def __init__(self, client, run_id, experiment_id, tracking_uri, output_dir):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self.output_dir = output_dir
        self.failed_kinds = set()  # calls refused by an answering server, warned about once
        self.down_since = None  # when the server stopped answering (None: it answers)
        self.last_attempt = 0.0
        self.pending = []  # metrics not sent during an outage, sent when it answers again
        self.sent_until = {}  # key -> last step a reattached run held: not sent again
        self.written_until = {}  # key -> last step metrics.jsonl held on resume
        self.artifact_failures = []  # uploads the answering server refused
        self._jsonl_failed = False
        self._lock = threading.RLock()  # the sender thread and the main thread share the state
        self._sender = None  # a MetricSender, started on first use
        self.system = None  # MLflow's system metrics monitor (tracking.system_metrics)

    # ----------------------------------------------------------------------------------------
    # start, reattach

    @classmethod
    def open(cls, recipe, output_dir: str, resume: bool, plugins=(), run_name=None,
             parent_run_id=None, extra_tags=None) -> Tracker | NullTracker:
        """Start (or on resume, reattach) the MLflow run of ``recipe``. Returns a
        :class:`NullTracker` when tracking is disabled or this is not rank 0. ``run_name``
        replaces ``tracking.run_name``; ``parent_run_id`` nests the run under that run (a search
        trial under its study); ``extra_tags`` are added to the new run's tags."""
        settings = TrackingSettings.from_recipe(recipe)
        if not settings.active:
            return NullTracker(output_dir)
        writable_folder(output_dir)  # before the MLflow run exists: a bad folder leaves no run
        uri = settings.tracking_uri
        check_reachable(uri)
        client = mlflow_client(uri)
        experiment_id = _experiment_id(client, settings.experiment)
        saved = read_json(os.path.join(output_dir, RUN_FILE), {}) if resume else {}
        if saved.get("tracking_uri") == uri:
            run_id = saved["run_id"]
            client.update_run(run_id, status="RUNNING")
        else:
            tags = {**settings.tags, **run_tags(recipe, plugins), **(extra_tags or {})}
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id
            run = client.create_run(experiment_id, run_name=run_name or settings.run_name,
                                    tags={mlflow_key(k): tag_value(k, v) for k, v in tags.items()})
            run_id = run.info.run_id
        tracker = cls(client, run_id, experiment_id, uri, output_dir)
        tracker._record()
        if resume:
            tracker.set_tags({"fturun.resumed": "true"})
        if settings.system_metrics:
            tracker.system = SystemMetrics.start(run_id, uri, resumed=run_id == saved.get("run_id"))
        return tracker

    @classmethod
    def attach(cls, run_id: str, tracking_uri: str, output_dir: str) -> Tracker:
        """Reattach the existing run ``run_id`` at ``tracking_uri`` (a search study's parent
        run, joined by another process): mark it RUNNING and record it in
        ``OUTPUT_DIR/mlflow_run.json``. Raises what MLflow raises when the run is not there
        (deleted, or another server)."""
        writable_folder(output_dir)
        client = mlflow_client(tracking_uri)
        run = client.get_run(run_id)
        client.update_run(run_id, status="RUNNING")
        tracker = cls(client, run_id, run.info.experiment_id, tracking_uri, output_dir)
        tracker._record()
        tracker.sent_until = logged_steps(client, run_id)
        return tracker

    def _record(self) -> None:
        """Write ``mlflow_run.json``: which run this output folder belongs to (read back by
        ``--resume``). When that fails (the disk filled up since the folder was checked), the
        run just opened is ended FAILED before the error is raised: never left RUNNING."""
        try:
            write_json(os.path.join(self.output_dir, RUN_FILE),
                       {"run_id": self.run_id, "experiment_id": self.experiment_id,
                        "tracking_uri": self.tracking_uri})
        except OSError as exc:
            fault = environment_fault(exc, self.output_dir, f"writing {RUN_FILE}")
            self.close("FAILED", error=str(fault))
            raise fault from None

    def continue_from(self, step: int) -> None:
        """Resuming from the checkpoint at ``step``: log each step of each metric once, and
        send the values up to ``step`` the run does not hold (:mod:`~fturun.tracking.replay`)."""
        from mlflow.entities import Metric

        rows = trim_metrics_file(self._metrics_path(), step)
        self.written_until = last_steps(rows)
        self.sent_until = logged_steps(self.client, self.run_id)
        now = int(time.time() * 1000)
        missing = [Metric(mlflow_key(k), v, now, s)
                   for k, v, s in unsent(rows, self.sent_until, mlflow_key)]
        if missing:
            self._enqueue(missing)
        for metric in missing:  # queued now: the resumed run's own value of a step is not sent
            # again (a kill before the first batch left trainable_params at step 0 unsent)
            self.sent_until[metric.key] = max(metric.step, self.sent_until.get(metric.key, -1))

    # ----------------------------------------------------------------------------------------
    # every call through here: a failure never reaches training

    def _safely(self, what, fn, *args, **kwargs):
        """Call ``fn``; a failure never reaches training. When the server stops answering,
        calls pause for :data:`OUTAGE_PAUSE` seconds between attempts (each attempt's retries
        are bounded, see :data:`HTTP_DEFAULTS`), so an outage costs training seconds, not
        minutes per logging step. Returns :data:`FAILED` for a failed or skipped call."""
        with self._lock:
            return self._call(what, fn, *args, **kwargs)

    def _call(self, what, fn, *args, **kwargs):
        now = time.monotonic()
        if self.down_since is not None and now - self.last_attempt < OUTAGE_PAUSE:
            return FAILED  # paused: the server did not answer a moment ago
        self.last_attempt = now
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a tracking outage must not stop training
            self._failed(what, exc, now)
            return FAILED
        if self.down_since is not None:
            self._answers_again(now)
        return result

    def _failed(self, what, exc, now) -> None:
        """Warn once that the server went away, or once per kind of call it refuses."""
        if self.down_since is None and not self._answers():
            self.down_since = now
            print(f"warning: MLflow {what} failed: the server at {self.tracking_uri} does "
                  f"not answer ({type(exc).__name__}); training goes on, metrics are kept "
                  f"in {self._metrics_path()} and sent when it answers again (tried every "
                  f"{OUTAGE_PAUSE:.0f} s)", file=sys.stderr)
        elif self.down_since is None and what not in self.failed_kinds:
            self.failed_kinds.add(what)  # the server answers: this call itself is refused
            print(f"warning: MLflow {what} failed ({type(exc).__name__}: {exc}); training "
                  "goes on", file=sys.stderr)

    def _answers_again(self, now) -> None:
        """The outage is over: send the metrics kept meanwhile."""
        outage = now - self.down_since
        self.down_since = None
        pending, self.pending = self.pending, []
        for i in range(0, len(pending), METRIC_BATCH):
            self._safely("log_batch(metrics)", self.client.log_batch, self.run_id,
                         metrics=pending[i:i + METRIC_BATCH])
        print(f"note: MLflow answers again after {outage:.0f} s; {len(pending)} metric "
              "values logged meanwhile were sent", file=sys.stderr)

    def _answers(self) -> bool:
        """Whether the tracking server answers its health check (a local store always does)."""
        try:
            check_reachable(self.tracking_uri, timeout=3.0)
            return True
        except RecipeRuntimeError:
            return False

    def _metrics_path(self) -> str:
        return os.path.join(self.output_dir, METRICS_FILE)

    # ----------------------------------------------------------------------------------------
    # params, tags, metrics

    def log_params(self, params: dict) -> None:
        """Log params in batches of at most 100, values cut to MLflow's limit."""
        from mlflow.entities import Param

        existing = {}
        run = self._safely("get_run", self.client.get_run, self.run_id)
        if run is not FAILED:
            existing = run.data.params
        items = [Param(key, param_value(v)) for key, v in
                 ((mlflow_key(k), v) for k, v in params.items() if k != "$schema")
                 if key not in existing]  # a resumed run keeps its params
        for i in range(0, len(items), BATCH):
            self._safely("log_batch(params)", self.client.log_batch, self.run_id,
                         params=items[i:i + BATCH])

    def set_tags(self, tags: dict) -> None:
        """Set run tags (values cut to MLflow's limit)."""
        from mlflow.entities import RunTag

        items = [RunTag(mlflow_key(k), tag_value(k, v)) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self._safely("log_batch(tags)", self.client.log_batch, self.run_id,
                         tags=items[i:i + BATCH])

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Append numeric metrics at ``step`` to metrics.jsonl and queue them for a sender
        thread, so that a slow or absent server never slows training."""
        from mlflow.entities import Metric

        numeric = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        written = {k: v for k, v in numeric.items() if step > self.written_until.get(k, -1)}
        if written:
            self._append({"step": step, **written})
        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), v, now, step) for k, v in numeric.items()
                 if step > self.sent_until.get(mlflow_key(k), -1)]
        if items:
            self._enqueue(items)

    def _enqueue(self, items: list) -> None:
        """Queue metrics for the sender thread: training never waits for the server."""
        if self._sender is None:
            self._sender = MetricSender(self._send_batch)
        self._sender.put(items)

    def _append(self, row: dict) -> None:
        """A line of ``metrics.jsonl``; a full or read-only disk is warned about once, never
        stops training (MLflow still gets the values)."""
        try:
            append_line(self._metrics_path(), row)
        except OSError as exc:
            if not self._jsonl_failed:
                self._jsonl_failed = True
                print(f"warning: cannot append to {self._metrics_path()} ({exc}); metrics go "
                      "on to MLflow only", file=sys.stderr)

    def _send_batch(self, items: list) -> None:
        """The sender thread's call: one request; values that fail wait in ``pending``."""
        if self._safely("log_batch(metrics)", self.client.log_batch, self.run_id,
                        metrics=items) is FAILED and len(self.pending) < MAX_PENDING:
            self.pending.extend(items)

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Send the queued metrics now and wait until they are sent (or kept as pending);
        False on timeout."""
        return self._sender is None or self._sender.flush(timeout)

    def callback(self):
        """A TrainerCallback that logs every Trainer log line with its global step."""
        from transformers import TrainerCallback

        tracker = self

        class FturunMlflowCallback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and state.is_world_process_zero:
                    tracker.log_metrics(logs, state.global_step)

        return FturunMlflowCallback()

    # ----------------------------------------------------------------------------------------
    # artifacts, inputs

    def log_artifact(self, path: str, artifact_path: str | None = None) -> bool:
        """Log a file or a folder; False when it was not uploaded. An upload the answering
        server refuses is kept in :attr:`artifact_failures` (the session reports it at the
        end); during an outage uploads are skipped with the outage's warning."""
        if os.path.isdir(path):
            what, fn = "log_artifacts", self.client.log_artifacts
        elif os.path.exists(path):
            what, fn = "log_artifact", self.client.log_artifact
        else:
            return False
        with redacted_for_upload(path) as upload:  # no secret leaves in a file either
            sent = self._safely(what, fn, self.run_id, upload, artifact_path)
        if sent is not FAILED:
            return True
        if self.down_since is None:
            self.artifact_failures.append(path)
        return False

    def log_input(self, name: str, ref, ds, context: str) -> None:
        """Record split ``name`` (the ``datasets.Dataset`` ``ds``, made from the recipe's
        dataset reference ``ref``) as a run input of ``context`` (train, eval, test), built with
        MLflow's dataset API (:mod:`~fturun.tracking.inputs`: source, schema, row count)."""
        from mlflow.entities import DatasetInput, InputTag

        from .inputs import dataset_entity, source_label

        dataset = dataset_entity(f"{source_label(ref)}/{name}", ref, ds, ds._fingerprint)
        tags = [InputTag("mlflow.data.context", context)]
        self._safely("log_inputs", self.client.log_inputs, self.run_id,
                     datasets=[DatasetInput(dataset, tags)])

    # ----------------------------------------------------------------------------------------
    # the end

    def close(self, status: str, error: str | None = None) -> None:
        """Send the queued metrics, then end the run as FINISHED, FAILED or KILLED. The status
        is set whatever fails before it (``error.txt`` on a full disk, an upload)."""
        try:
            if not self.flush():
                print(f"warning: MLflow: metrics not sent within {FLUSH_TIMEOUT:.0f} s; they "
                      f"are in {self._metrics_path()}", file=sys.stderr)
            if self._sender is not None:
                self._sender.close()
                self._sender = None
            if self.system is not None:
                self.system.stop(wait=self.down_since is None)
                self.system = None
            if self.down_since is not None:
                self.last_attempt = 0.0  # one last attempt, whatever the pause
            if error:
                self.set_tags({"fturun.error": error})
                try:  # a disk that cannot take error.txt (the fault itself?) costs only the file
                    self.log_artifact(write_text(os.path.join(self.output_dir, "error.txt"),
                                                 error))
                except OSError as exc:
                    print(f"warning: cannot write error.txt ({exc}); the error is in the MLflow "
                          "run's fturun.error tag", file=sys.stderr)
        finally:
            if self._safely("set_terminated", self.client.set_terminated, self.run_id,
                            status) is FAILED and self.down_since is not None:
                print(f"warning: MLflow still does not answer: run {self.run_id} keeps the "
                      f"status RUNNING there; its metrics are in {self._metrics_path()}",
                      file=sys.stderr)


def _experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, tags=EXPERIMENT_TAGS)
    except Exception:  # another process created it meanwhile (a shared search study)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
