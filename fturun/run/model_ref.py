"""A trained model named on the command line (``evaluate``, ``predict``, ``chat``): a run id,
``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, a logged model id (``m-...``), a
checkpoint folder or a ``model/`` folder, resolved to a folder on this machine with what is
known of how the model was trained (its task, resolved recipe and final metrics).

A registered version, a logged model and a run are all read from the run that trained them:
its ``model/`` artifact (an adapter as trained, not the merged copy the registry serves), its
``recipe/resolved.json`` and its final eval/test metrics. A folder is read as it is; the run's
output folder above it (``recipe.json``, ``eval_results.json``, ``mlflow_run.json``) tells
the rest, and a checkpoint's own ``trainer_state.json`` its metrics at its step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..core.errors import UsageError
from ..core.io import read_json
from ..tracking.artifacts import MODEL_REFERENCE  # a full fine-tune's model/ artifact
from ..tracking.queries import RESOLVED_ARTIFACT, open_client, result_metrics

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
REGISTERED = re.compile(r"^models:/([^/@]+)(?:@([A-Za-z0-9_\-]+)|/(\d+))$")
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class ModelSource:
    """Where a model REF led (see the module docstring)."""

    ref: str
    kind: str  # "run", "registered model", "logged model", "checkpoint", "folder"
    folder: str  # the weights: a full model, or a peft adapter (``adapter``)
    adapter: bool = False
    run_id: str | None = None  # the run that trained it
    model_id: str | None = None  # its MLflow logged model
    tracking_uri: str | None = None
    task: str | None = None
    recipe: dict | None = None  # the resolved recipe it was trained with
    recipe_dir: str = "."  # where that recipe's relative paths are found
    metrics: dict = field(default_factory=dict)  # final eval_/test_ metrics of its training

    def describe(self) -> str:
        """One line: what was resolved, and from where."""
        what = "adapter" if self.adapter else "model"
        run = f" of run {self.run_id}" if self.run_id else ""
        return f"{self.ref}: {self.kind}, {what} in {self.folder}{run}"


def resolve_model(ref: str, tracking_uri: str | None, workdir: str) -> ModelSource:
    """The :class:`ModelSource` of ``ref``; artifacts are downloaded into ``workdir``. Raises
    :class:`UsageError` (exit 2) for a REF that names nothing, saying what a REF can be."""
    if os.path.isdir(ref):
        return _from_folder(ref)
    registered = REGISTERED.match(ref)
    if registered or RUN_ID.match(ref) or ref.startswith("m-"):
        client, uri = open_client(tracking_uri)
        if registered:
            source = _from_registry(client, ref, *registered.groups())
        elif ref.startswith("m-"):
            source = _from_logged_model(client, ref)
        else:
            source = _from_run(client, ref, ref, "run", workdir)
        if source.folder is None:
            source = _from_run(client, source.run_id, ref, source.kind, workdir,
                               model_id=source.model_id)
        source.tracking_uri = uri
        return source
    hint = " (no such folder here)" if ("/" in ref or ref.startswith(".")) else ""
    raise UsageError(f"model '{ref}' is unknown{hint}: a model is a run id (32 hex digits, "
                     "'fturun runs' lists them), models:/NAME@ALIAS or models:/NAME/VERSION, "
                     "a logged model id (m-...), a checkpoint folder or a model/ folder")


def model_resolver(tracking_uri: str | None):
    """``resolver(ref) -> folder`` for :meth:`fturun.plugin.context.BuildContext.resolve_model`
    in a run: :func:`resolve_model` against ``tracking_uri`` (None: $MLFLOW_TRACKING_URI, else
    MLflow's default), its downloads in one temporary folder made at the first one and removed
    when the process ends."""
    import atexit
    import shutil
    import tempfile

    workdir: list = []

    def resolver(ref: str) -> str:
        if not workdir:
            workdir.append(tempfile.mkdtemp(prefix="fturun-models-"))
            atexit.register(shutil.rmtree, workdir[0], ignore_errors=True)
        return resolve_model(ref, tracking_uri, workdir[0]).folder

    return resolver


def _from_registry(client, ref: str, name: str, alias: str | None, version: str | None):
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(name, alias) if alias else \
            client.get_model_version(name, version)
    except MlflowException as exc:
        raise UsageError(f"model '{ref}' is not in the registry at {client.tracking_uri}: "
                         f"{exc.message}") from None
    if not found.run_id:
        raise UsageError(f"model '{ref}' (version {found.version}) names no run: fturun "
                         "evaluates a version from the run that trained it")
    return ModelSource(ref, "registered model", None, run_id=found.run_id,
                       model_id=getattr(found, "model_id", None))


def _from_logged_model(client, ref: str):
    try:
        logged = client.get_logged_model(ref)
    except Exception as exc:  # noqa: BLE001 - mlflow raises its own exception types per store
        raise UsageError(f"model '{ref}': no logged model with that id at "
                         f"{client.tracking_uri} ({exc})") from None
    if not logged.source_run_id:
        raise UsageError(f"logged model '{ref}' names no run: fturun reads a model from the "
                         "run that trained it")
    return ModelSource(ref, "logged model", None, run_id=logged.source_run_id,
                       model_id=logged.model_id)


def _weights_of_logged_model(client, folder: str, target: str) -> str:
    """A full fine-tune's model folder from the run's MLflow Model (its weights are stored
    there only): the transformers flavor's ``model/`` with its tokenizer's files beside it."""
    import shutil

    from mlflow.artifacts import download_artifacts

    reference = read_json(os.path.join(folder, MODEL_REFERENCE), {})
    from ..tracking.settings import using_tracking_uri

    with using_tracking_uri(client.tracking_uri):
        logged = download_artifacts(artifact_uri=reference["files"],
                                    dst_path=os.path.join(target, "logged"))
    weights = next((os.path.dirname(p) for p in sorted(glob_files(logged, "config.json"))
                    if os.path.basename(os.path.dirname(p)) == "model"), None)
    if weights is None:
        raise UsageError(f"the run's MLflow Model at {reference['files']} holds no model folder")
    tokenizer = os.path.join(logged, "components", "tokenizer")
    for name in (os.listdir(tokenizer) if os.path.isdir(tokenizer) else []):
        shutil.copy2(os.path.join(tokenizer, name), os.path.join(weights, name))
    for name in os.listdir(folder):  # fturun's own files of the folder (labels.json, ...)
        if name != MODEL_REFERENCE and os.path.isfile(os.path.join(folder, name)):
            shutil.copy2(os.path.join(folder, name), os.path.join(weights, name))
    return weights


def glob_files(root: str, name: str) -> list:
    """Every file called ``name`` under ``root``."""
    return [os.path.join(d, name) for d, _, files in os.walk(root) if name in files]


def _from_run(client, run_id: str, ref: str, kind: str, workdir: str, model_id=None):
    """The run's ``model/`` artifact, resolved recipe and final metrics."""
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - mlflow raises its own exception types per store
        raise UsageError(f"model '{ref}': no run '{run_id}' at {client.tracking_uri} "
                         f"({type(exc).__name__})") from None
    target = os.path.join(workdir, run_id)
    os.makedirs(target, exist_ok=True)
    try:
        folder = client.download_artifacts(run_id, "model", target)
    except Exception:  # noqa: BLE001 - any failure: no such artifact
        raise UsageError(f"model '{ref}': run {run_id} has no model/ artifact (it ran with "
                         "tracking.log_model=false or output.save_model=false)") from None
    if os.path.exists(os.path.join(folder, MODEL_REFERENCE)):
        folder = _weights_of_logged_model(client, folder, target)
    try:
        recipe = read_json(client.download_artifacts(run_id, RESOLVED_ARTIFACT, target), None)
    except Exception:  # noqa: BLE001 - a run without its recipe: the task tag still says
        recipe = None
    if model_id is None and run.outputs and run.outputs.model_outputs:
        model_id = max(run.outputs.model_outputs, key=lambda o: o.step).model_id
    original = run.data.tags.get("fturun.recipe_path")
    return ModelSource(ref, kind, folder, adapter=_is_adapter(folder), run_id=run_id,
                       model_id=model_id, task=run.data.tags.get("fturun.task")
                       or (recipe or {}).get("task"), recipe=recipe,
                       recipe_dir=os.path.dirname(original) if original else ".",
                       metrics=result_metrics(run.data.metrics))


def _from_folder(ref: str) -> ModelSource:
    """A checkpoint (``trainer_state.json`` inside) or a saved model folder; the run's output
    folder above it says how it was trained."""
    folder = os.path.abspath(ref)
    if not (os.path.isfile(os.path.join(folder, "config.json"))
            or os.path.isfile(os.path.join(folder, ADAPTER_CONFIG))):
        raise UsageError(f"model '{ref}' is a folder without a model: no config.json or "
                         f"{ADAPTER_CONFIG} in it; name a run's model/ folder or a "
                         "checkpoint-N folder")
    output_dir = os.path.dirname(folder)
    recipe = read_json(os.path.join(output_dir, "recipe.json"), None)
    run = read_json(os.path.join(output_dir, "mlflow_run.json"), {}) or {}
    state = read_json(os.path.join(folder, "trainer_state.json"), None)
    if state is not None:
        kind, metrics = "checkpoint", checkpoint_metrics(state)
    else:
        kind = "folder"
        metrics = result_metrics(read_json(os.path.join(output_dir, "eval_results.json"), {})
                                 or {})
    return ModelSource(ref, kind, folder, adapter=_is_adapter(folder),
                       run_id=run.get("run_id"), tracking_uri=run.get("tracking_uri"),
                       task=(recipe or {}).get("task"), recipe=recipe, recipe_dir=output_dir,
                       metrics=metrics)


def checkpoint_metrics(state: dict) -> dict:
    """The eval metrics a checkpoint's ``trainer_state.json`` logged at its own step."""
    step = state.get("global_step")
    for entry in reversed(state.get("log_history") or []):
        if entry.get("step") == step and any(k.startswith("eval_") for k in entry):
            return result_metrics({k: v for k, v in entry.items()
                                   if isinstance(v, (int, float))})
    return {}


def _is_adapter(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, ADAPTER_CONFIG))


def check_task(source: ModelSource, task, recipe_path: str | None = None) -> None:
    """A model trained for another task than ``task`` (a :class:`~fturun.plugin.tasks.Task`)
    is a usage error; so is a model whose architecture is not the task's (a folder without a
    recipe: its ``config.json``)."""
    where = f", but the recipe {recipe_path} is for" if recipe_path else ", not"
    if source.task and source.task != task.name:
        raise UsageError(f"model '{source.ref}' was trained for the task '{source.task}'"
                         f"{where} '{task.name}': use a recipe of the model's task")
    config = read_json(os.path.join(source.folder, "config.json"), {}) or {}
    wanted = task.model_class.removeprefix("AutoModel")
    found = [a for a in config.get("architectures") or [] if "For" in a]
    if wanted.startswith("For") and found and not any(a.endswith(wanted) for a in found):
        raise UsageError(f"model '{source.ref}' is a {found[0]}{where} '{task.name}' "
                         f"({task.model_class}): use a recipe of the model's task")
