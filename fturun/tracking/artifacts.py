"""The end-of-run artifacts of a tracked run: the recipe as written (with its bases) and
resolved, the environment, the eval report, the loss/metric curves, the run's description, the
saved model folder and the run's MLflow Model (:mod:`.model`; registered when the recipe names a
registered model)."""

from __future__ import annotations

import io
import json
import os
import sys

from ..core.io import write_bytes, write_json
from ..core.redaction import redact_tree
from .links import model_version_link
from .params import environment
from .settings import TrackingSettings
from .tracker import NullTracker

STAGING = ".mlflow-staging"  # under the output folder: the redacted copies that are logged
RUN_DESCRIPTION = "mlflow.note.content"  # the tag MLflow's UI shows as a run's description


def log_run_results(tracker, recipe, log_history: list, output_dir: str, model_dir: str | None,
                    results_file: str | None, *, build=None, saved: dict | None = None,
                    step: int = 0) -> None:
    """Log the end-of-run artifacts: the recipe as written (with its bases) and resolved, the
    environment, the eval report, the loss/metric curves, the recipe's description as the run's
    description, ``model_dir`` as ``model/``, and with ``build`` (the run's
    :class:`~fturun.run.build.Build`) and ``saved`` (what it saved) the MLflow Model linked to the
    metrics of ``step``, registered if asked. Writes ``OUTPUT_DIR/recipe.json`` (the resolved
    recipe) when it is not there yet."""
    if isinstance(tracker, NullTracker):
        return
    if isinstance(recipe.data.get("description"), str):
        tracker.set_tags({RUN_DESCRIPTION: recipe.data["description"]})
    staging = os.path.join(output_dir, STAGING)
    _log_recipe(tracker, recipe, output_dir, staging)
    tracker.log_artifact(write_json(os.path.join(staging, "environment.json"), environment()))
    if results_file:
        tracker.log_artifact(results_file)
    curves = plot_curves(log_history, os.path.join(staging, "curves.png"))
    if curves:
        tracker.log_artifact(curves)
    events = tensorboard_folder(recipe, output_dir)
    if events:
        tracker.log_artifact(events, "tensorboard")
    settings = TrackingSettings.from_recipe(recipe)
    if model_dir and settings.log_model and os.path.isdir(model_dir):
        logged = None
        if build is not None:
            logged = _log_mlflow_model(tracker, recipe, build, saved or {}, step, settings)
        log_model_folder(tracker, model_dir, logged, staging)


#: what the run's ``model/`` artifact holds instead of a full model's weights, which are stored
#: once, in the run's MLflow Model
MODEL_REFERENCE = "logged_model.json"


def log_model_folder(tracker, model_dir: str, logged: dict | None, staging: str) -> None:
    """``model/``: the saved folder, unless the run's MLflow Model holds the same weights (a
    full fine-tune logged with the transformers flavor): then a small ``model/logged_model.json``
    naming the logged model, so the weights are stored once per run. An adapter run keeps its
    small adapter folder (the logged model is the merged model, another set of weights)."""
    adapter = os.path.exists(os.path.join(model_dir, "adapter_config.json"))
    if adapter or not logged or logged.get("flavor") != "transformers":
        tracker.log_artifact(model_dir, "model")
        return
    reference = {"model_id": logged["model_id"], "model_uri": logged["model_uri"],
                 "files": logged.get("artifact_location"),
                 "why": "the run's MLflow Model holds this model's weights: they are stored "
                        "once; download them with `mlflow artifacts download -u FILES`"}
    tracker.log_artifact(write_json(os.path.join(staging, "model", MODEL_REFERENCE), reference),
                         "model")


def tensorboard_folder(recipe, output_dir: str) -> str | None:
    """The folder of the run's TensorBoard event files (``training.report_to`` has
    ``tensorboard``): ``TENSORBOARD_LOGGING_DIR`` if set, else the Trainer's ``OUTPUT_DIR/runs``;
    None when the run did not report to TensorBoard or wrote nothing."""
    report_to = (recipe.data.get("training") or {}).get("report_to")
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if not {"tensorboard", "all"} & set(names):
        return None
    folder = os.environ.get("TENSORBOARD_LOGGING_DIR") or os.path.join(output_dir, "runs")
    return folder if os.path.isdir(folder) and os.listdir(folder) else None


def _log_mlflow_model(tracker, recipe, build, saved: dict, step: int, settings) -> dict | None:
    """The run's MLflow Model (what :func:`~.model.log_run_model` returns); a failure is a
    warning (training is done and saved) and gives None."""
    from .model import NotLoggable, log_run_model

    try:
        logged = log_run_model(tracker, recipe, build, saved, step, settings)
    except Exception as exc:  # noqa: BLE001 - the run's outputs are saved whatever happens here
        reason = str(exc) if isinstance(exc, NotLoggable) else f"{type(exc).__name__}: {exc}"
        tracker.set_tags({"fturun.model_error": reason})
        print(f"warning: the run's MLflow Model was not logged: {reason}; its model/ folder is "
              "logged as an artifact", file=sys.stderr)
        return None
    if logged is None:
        return None
    where = logged["model_uri"]
    if logged.get("artifact_location"):
        where += f" (files: {logged['artifact_location']})"
    if logged["version"]:
        where = f"models:/{settings.registered_model_name}/{logged['version']}"
        evidence = logged.get("promotion")
        if evidence is not None:
            where += f"; {settings.registered_model_name}@{evidence.reason}"
        page = model_version_link(tracker.tracking_uri, settings.registered_model_name,
                                  logged["version"])
        if page:
            where += f"\n  its registry page: {page}"
    print(f"MLflow Model ({logged['flavor']}): {where}")
    return logged


def _log_recipe(tracker, recipe, output_dir: str, staging: str) -> None:
    """``recipe/``: every file as written (a redacted copy of one that holds a credential) and
    ``resolved.json`` (redacted)."""
    for path in recipe.files:
        with open(path, encoding="utf-8-sig") as f:
            data = json.loads(f.read())
        safe = redact_tree(data)
        if safe != data:
            path = write_json(os.path.join(staging, "written", os.path.basename(path)), safe)
        tracker.log_artifact(path, "recipe")
    resolved = os.path.join(output_dir, "recipe.json")
    if not os.path.exists(resolved):
        write_json(resolved, recipe.data)
    tracker.log_artifact(write_json(os.path.join(staging, "resolved.json"),
                                    redact_tree(recipe.data)), "recipe")


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
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    plt.close(fig)
    return write_bytes(path, image.getvalue())
