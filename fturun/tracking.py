"""MLflow tracking owned by fturun (the Trainer's own MLflow callback is never used): one run per
recipe run, reattached on ``--resume``; params = flattened recipe + effective TrainingArguments,
logged in batches within the server's limits; step-wise metrics; tags; artifacts; the model.

Only rank 0 of a multi-process launch talks to MLflow. A tracking server that goes away mid-run
never stops training: every metric is also appended to ``OUTPUT_DIR/metrics.jsonl``, and logging
errors are reported once and then skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from importlib import metadata

from .errors import RecipeRuntimeError
from .launch import is_main_process
from .redaction import redact, redact_override, redact_tree

RUN_FILE = "mlflow_run.json"
METRICS_FILE = "metrics.jsonl"
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
MAX_KEY = 250  # MLflow's limit on a key
BATCH = 100  # MLflow's limit on params/tags per log_batch
METRIC_BATCH = 1000  # MLflow's limit on metrics per log_batch
MAX_PENDING = 100_000  # metric values held for a server that is down
OUTAGE_PAUSE = 60.0  # seconds between attempts while the tracking server does not answer
#: MLflow's HTTP retries, unless set in the environment: its defaults (7 retries, backoff
#: factor 2, 120 s timeout) hold a call for about 4 minutes when the server is down
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
FAILED = object()  # what a failed or skipped tracking call returns
FLUSH_TIMEOUT = 120.0  # seconds the end of a run waits for queued metrics
PACKAGES = ("fturun", "torch", "transformers", "datasets", "evaluate", "accelerate", "peft",
            "mlflow", "pluggy", "jsonschema", "deepspeed", "optuna", "tokenizers", "numpy")


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else MLflow 3's own default: SQLite in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or \
        f"sqlite:///{os.path.abspath('mlflow.db')}"


def flatten(data, prefix="") -> dict:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b.0": 1, "a.b.1.c": 2}``; secrets redacted."""
    out = {}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: redact(prefix, data)}
    if not data and prefix:
        out[prefix] = json.dumps(data)
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (dict, list)):
            out.update(flatten(value, name))
        else:
            out[name] = redact(name, value)
    return out


def mlflow_key(key: str) -> str:
    """A key MLflow accepts: alphanumerics, ``_ - . : /`` and spaces, at most 250 characters."""
    return re.sub(r"[^\w\-. :/]", "_", str(key))[:MAX_KEY]


def param_value(value) -> str:
    """A param value as MLflow stores it, cut to the server's limit with a visible marker."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_VALUE:
        marker = "...[truncated; full value in the recipe artifact]"
        text = text[: MAX_PARAM_VALUE - len(marker)] + marker
    return text


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`RecipeRuntimeError` within seconds when an HTTP tracking server does not
    answer, before any model is loaded."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise RecipeRuntimeError(
        f"MLflow tracking server {uri} is not reachable ({reason}). Start it, fix "
        "tracking.tracking_uri or MLFLOW_TRACKING_URI, or run without tracking: "
        "tracking.enabled=false")


def git_info(path: str) -> dict:
    """Commit and dirty flag of the git work tree holding ``path`` ({} outside git)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return {}
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain"],
                                capture_output=True, text=True, timeout=5)
        return {"fturun.git_commit": commit.stdout.strip(),
                "fturun.git_dirty": str(bool(status.stdout.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment() -> dict:
    """Python, platform and package versions, for the environment artifact."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version, "platform": platform.platform(), "packages": versions,
            "executable": sys.executable}


class NullTracker:
    """Tracking disabled (or not rank 0): every call does nothing."""

    run_id = None
    experiment_id = None
    tracking_uri = None

    def callback(self):
        """No callback."""
        return None

    def log_params(self, params: dict) -> None:
        """Nothing."""

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Nothing."""

    def set_tags(self, tags: dict) -> None:
        """Nothing."""

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Nothing."""

    def log_input(self, *args, **kwargs) -> None:
        """Nothing."""

    def close(self, status: str, error: str | None = None) -> None:
        """Nothing."""


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
        self._lock = threading.RLock()  # the sender thread and the main thread share the state
        self._sender = self._queue = None

    @classmethod
    def open(cls, recipe, output_dir: str, resume: bool, plugins=(), run_name=None,
             parent_run_id=None, extra_tags=None) -> "Tracker | NullTracker":
        """Start (or on resume, reattach) the MLflow run of ``recipe``. Returns a
        :class:`NullTracker` when tracking is disabled or this is not rank 0. ``run_name``
        replaces ``tracking.run_name``; ``parent_run_id`` nests the run under that run (a search
        trial under its study); ``extra_tags`` are added to the new run's tags."""
        settings = recipe.data.get("tracking") or {}
        if not settings.get("enabled", True) or not is_main_process():
            return NullTracker()
        uri = settings.get("tracking_uri") or default_tracking_uri()
        check_reachable(uri)
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment_name = settings.get("experiment") or _stem(recipe.path)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(experiment_name)
            except Exception:  # another process created it meanwhile (a shared search study)
                experiment = client.get_experiment_by_name(experiment_name)
                if experiment is None:
                    raise
        if experiment is not None:
            experiment_id = experiment.experiment_id
        run_file = os.path.join(output_dir, RUN_FILE)
        run_id = None
        if resume and os.path.exists(run_file):
            with open(run_file) as f:
                saved = json.load(f)
            if saved.get("tracking_uri") == uri:
                run_id = saved["run_id"]
                client.update_run(run_id, status="RUNNING")
        tags = dict(settings.get("tags") or {})
        tags.update(run_tags(recipe, plugins))
        tags.update(extra_tags or {})
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        if run_id is None:
            run = client.create_run(experiment_id, run_name=run_name or settings.get("run_name"),
                                    tags={mlflow_key(k): str(redact(k, v))[:8000]
                                          for k, v in tags.items()})
            run_id = run.info.run_id
        os.makedirs(output_dir, exist_ok=True)
        with open(run_file, "w") as f:
            json.dump({"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri},
                      f)
        tracker = cls(client, run_id, experiment_id, uri, output_dir)
        if resume:
            tracker.set_tags({"fturun.resumed": "true"})
        return tracker

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
        except Exception as exc:  # a tracking outage must not stop training
            if self.down_since is None and not self._answers():
                self.down_since = now
                print(f"warning: MLflow {what} failed: the server at {self.tracking_uri} does "
                      f"not answer ({type(exc).__name__}); training goes on, metrics are kept "
                      f"in {os.path.join(self.output_dir, METRICS_FILE)} and sent when it "
                      f"answers again (tried every {OUTAGE_PAUSE:.0f} s)", file=sys.stderr)
            elif self.down_since is None and what not in self.failed_kinds:
                self.failed_kinds.add(what)  # the server answers: this call itself is refused
                print(f"warning: MLflow {what} failed ({type(exc).__name__}: {exc}); training "
                      "goes on", file=sys.stderr)
            return FAILED
        if self.down_since is not None:
            outage = now - self.down_since
            self.down_since = None
            pending, self.pending = self.pending, []
            for i in range(0, len(pending), METRIC_BATCH):
                self._safely("log_batch(metrics)", self.client.log_batch, self.run_id,
                             metrics=pending[i:i + METRIC_BATCH])
            print(f"note: MLflow answers again after {outage:.0f} s; {len(pending)} metric "
                  "values logged meanwhile were sent", file=sys.stderr)
        return result

    def _answers(self) -> bool:
        """Whether the tracking server answers its health check (a local store always does)."""
        try:
            check_reachable(self.tracking_uri, timeout=3.0)
            return True
        except RecipeRuntimeError:
            return False

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

        items = [RunTag(mlflow_key(k), str(redact(k, v))[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self._safely("log_batch(tags)", self.client.log_batch, self.run_id,
                         tags=items[i:i + BATCH])

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Append numeric metrics at ``step`` to metrics.jsonl and queue them for a sender
        thread, so that a slow or absent server never slows training."""
        from mlflow.entities import Metric

        numeric = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not numeric:
            return
        with open(os.path.join(self.output_dir, METRICS_FILE), "a") as f:
            f.write(json.dumps({"step": step, **numeric}) + "\n")
        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), v, now, step) for k, v in numeric.items()]
        if self._sender is None:
            import queue

            self._queue = queue.Queue()
            self._sender = threading.Thread(target=self._send_metrics, name="fturun-mlflow",
                                            daemon=True)
            self._sender.start()
        self._queue.put(items)  # training never waits for the server

    def _send_metrics(self) -> None:
        """The sender thread: queued metrics in batches; those that fail wait in ``pending``."""
        while True:
            items = self._queue.get()
            if items is None:  # closed
                self._queue.task_done()
                return
            try:
                while len(items) < METRIC_BATCH and not self._queue.empty():
                    more = self._queue.get_nowait()
                    self._queue.task_done()
                    if more is None:
                        self._queue.put(None)  # seen after this batch
                        break
                    items = items + more
                if self._safely("log_batch(metrics)", self.client.log_batch, self.run_id,
                                metrics=items) is FAILED and len(self.pending) < MAX_PENDING:
                    self.pending.extend(items)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Wait until the queued metrics are sent (or kept as pending); False on timeout."""
        if self._sender is None:
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Log a file or a folder."""
        if os.path.isdir(path):
            self._safely("log_artifacts", self.client.log_artifacts, self.run_id, path,
                         artifact_path)
        elif os.path.exists(path):
            self._safely("log_artifact", self.client.log_artifact, self.run_id, path,
                         artifact_path)

    def log_input(self, name: str, source: str, fingerprint: str, num_rows: int,
                  context: str) -> None:
        """Record a dataset (source and fingerprint) as a run input."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=str(fingerprint)[:36], source_type="fturun",
                          source=json.dumps({"source": source}),
                          profile=json.dumps({"num_rows": num_rows}))
        tags = [InputTag("mlflow.data.context", context)]
        self._safely("log_inputs", self.client.log_inputs, self.run_id,
                     datasets=[DatasetInput(dataset, tags)])

    def register_model(self, name: str, artifact_path: str) -> None:
        """Register the logged model folder as a new version of ``name`` in the registry."""
        from mlflow.exceptions import MlflowException

        if self.down_since is not None:
            return
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self._safely("create_registered_model", self.client.create_registered_model, name)
        run = self._safely("get_run", self.client.get_run, self.run_id)
        if run is not FAILED:
            source = f"{run.info.artifact_uri}/{artifact_path}"
            self._safely("create_model_version", self.client.create_model_version, name,
                         source, run_id=self.run_id)

    def callback(self):
        """A TrainerCallback that logs every Trainer log line with its global step."""
        from transformers import TrainerCallback

        tracker = self

        class FturunMlflowCallback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and state.is_world_process_zero:
                    tracker.log_metrics(logs, state.global_step)

        return FturunMlflowCallback()

    def close(self, status: str, error: str | None = None) -> None:
        """Send the queued metrics, then end the run as FINISHED, FAILED or KILLED."""
        if not self.flush():
            print(f"warning: MLflow: metrics not sent within {FLUSH_TIMEOUT:.0f} s; they are in "
                  f"{os.path.join(self.output_dir, METRICS_FILE)}", file=sys.stderr)
        if self._sender is not None:
            self._queue.put(None)  # the sender thread ends
            self._sender = None
        if self.down_since is not None:
            self.last_attempt = 0.0  # one last attempt, whatever the pause
        if error:
            self.set_tags({"fturun.error": error[:8000]})
            path = os.path.join(self.output_dir, "error.txt")
            with open(path, "w") as f:
                f.write(error)
            self.log_artifact(path)
        if self._safely("set_terminated", self.client.set_terminated, self.run_id,
                        status) is FAILED and self.down_since is not None:
            print(f"warning: MLflow still does not answer: run {self.run_id} keeps the status "
                  f"RUNNING there; its metrics are in "
                  f"{os.path.join(self.output_dir, METRICS_FILE)}", file=sys.stderr)


def run_tags(recipe, plugins=()) -> dict:
    """Tags that make a run findable and reproducible."""
    from . import __version__

    tags = {"fturun.version": __version__, "fturun.recipe_path": os.path.abspath(recipe.path),
            "fturun.task": recipe.data.get("task", "sequence-classification")}
    try:
        with open(recipe.path, "rb") as f:
            tags["fturun.recipe_sha256"] = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        pass
    if recipe.overrides:
        tags["fturun.overrides"] = " ".join(redact_override(o) for o in recipe.overrides)
    for plugin in plugins:
        if plugin.status == "ok":
            tags[f"fturun.plugin.{plugin.name}"] = plugin.version
    model = recipe.data.get("model")
    if isinstance(model, dict) and (model.get("params") or {}).get("trust_remote_code"):
        tags["fturun.trust_remote_code"] = "true"
    tags.update(git_info(recipe.path))
    return tags


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def plot_curves(log_history: list, path: str) -> str | None:
    """A PNG of training loss and eval metrics over steps; None when there is nothing to plot."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith("eval_") and isinstance(value, (int, float)) and \
                    not key.endswith(("runtime", "per_second")) and key != "eval_epoch":
                evals.setdefault(key, []).append((entry["step"], value))
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        axes[0].plot(*zip(*train), label="train loss")
    if "eval_loss" in evals:
        axes[0].plot(*zip(*evals["eval_loss"]), marker="o", label="eval loss")
    axes[0].set_xlabel("step")
    axes[0].set_title("loss")
    axes[0].legend()
    for key, points in evals.items():
        if key != "eval_loss":
            axes[1].plot(*zip(*points), marker="o", label=key)
    axes[1].set_xlabel("step")
    axes[1].set_title("eval metrics")
    if len(evals) > 1:
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_run_results(tracker, recipe, log_history: list, output_dir: str, model_dir: str | None,
                    results_file: str | None) -> None:
    """Log the end-of-run artifacts: the recipe as written (with its bases) and resolved, the
    environment, the eval report, the loss/metric curves, and the model (registered if asked)."""
    if isinstance(tracker, NullTracker):
        return
    staging = os.path.join(output_dir, ".mlflow-staging")
    os.makedirs(os.path.join(staging, "written"), exist_ok=True)
    for path in recipe.files:
        # the recipe as written, unless it holds a credential: then a redacted copy
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
        data = json.loads(text)
        safe = redact_tree(data)
        if safe != data:
            path = os.path.join(staging, "written", os.path.basename(path))
            with open(path, "w") as f:
                json.dump(safe, f, indent=2)
        tracker.log_artifact(path, "recipe")
    resolved = os.path.join(output_dir, "recipe.json")
    if not os.path.exists(resolved):
        with open(resolved, "w") as f:
            json.dump(recipe.data, f, indent=2)
    resolved_copy = os.path.join(staging, "resolved.json")
    with open(resolved_copy, "w") as f:
        json.dump(redact_tree(recipe.data), f, indent=2)
    tracker.log_artifact(resolved_copy, "recipe")
    env_file = os.path.join(staging, "environment.json")
    with open(env_file, "w") as f:
        json.dump(environment(), f, indent=2)
    tracker.log_artifact(env_file)
    if results_file:
        tracker.log_artifact(results_file)
    curves = plot_curves(log_history, os.path.join(staging, "curves.png"))
    if curves:
        tracker.log_artifact(curves)
    settings = recipe.data.get("tracking") or {}
    if model_dir and settings.get("log_model", True) and os.path.isdir(model_dir):
        tracker.log_artifact(model_dir, "model")
        name = settings.get("registered_model_name")
        if name:
            tracker.register_model(name, "model")
