"""The run's MLflow Model: what a teammate loads, serves and promotes from the registry.

With ``tracking.log_model`` on (the default) and a task that names a ``pipeline_task``, the end
of a run logs an MLflow 3 *logged model* of the run's experiment, linked to the run: its params,
and the metrics of the final step (the last evaluation, the test metrics). It is

- MLflow's ``transformers`` flavor of a pipeline for the task (``text-classification``,
  ``token-classification``, ``fill-mask``, ``text-generation``) holding the whole model: a
  trained adapter is merged into its base model first (the adapter itself stays the run's
  ``model/`` artifact), so loading it needs neither peft nor the base model's folder;
- where the flavor cannot hold the model, fturun's pyfunc wrapper (:mod:`.pyfunc_model`, logged
  as code): a task whose pipeline the installed transformers lacks (``text2text-generation``
  under transformers 5: seq2seq), or an adapter that cannot be merged (prefix, prompt and
  p-tuning), logged as base model + adapter;

each with a signature and an input example (the start of a few of the run's own eval texts),
task metadata, a model card and pip requirements pinned to the training environment. With
``tracking.registered_model_name`` it becomes a new version of that registered model
(:mod:`.model_registry`). The model is loaded back from the folders the run saved (``model/``,
``model-merged/``), not taken from the Trainer, so what is logged is what was saved.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from types import SimpleNamespace
from typing import Any

from ..core.io import read_json, write_json
from ..core.redaction import redact_text, redact_tree
from ..plugin.tasks import generation_settings
from ..recipe.refs import component_ref
from .model_provenance import RUN_DESCRIPTION, link_to_run, logged_model_description
from .settings import using_tracking_uri

MODEL_NAME = "model"  # the logged model's name when the recipe registers none
PYFUNC_CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyfunc_model.py")
EXAMPLE_ROWS = 2  # input example: this many texts
EXAMPLE_TOKENS = 24  # ... of at most this many tokens each
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors")
#: how the flavor's pyfunc runs a token-classification pipeline: one tag per word (the
#: first piece's), "O" words kept, so every text gets an answer
TOKEN_CLASSIFICATION_CONFIG = {"aggregation_strategy": "first", "ignore_labels": []}


class NotLoggable(Exception):
    """The run's model cannot be logged as an MLflow Model; the message says why and what to
    do."""


@dataclass
class TrainedModel:
    """The trained model as it is logged."""

    model: Any
    tokenizer: Any
    base: str | None  # the base model as the recipe names it
    base_folder: str | None = None  # where the base model is on this machine (its model card)
    adapter_dir: str | None = None  # an adapter that could not be merged (kept beside the model)
    merged: bool = False  # an adapter was merged into the model


def log_run_model(tracker, recipe, build, saved: dict, step: int, settings) -> dict | None:
    """Log the run's MLflow Model (see the module docstring) and register it when the recipe
    names a registered model. Returns ``{"model_uri", "model_id", "flavor", "version"}``, or
    None when the task names no pipeline (a note says so). Raises :class:`NotLoggable` when the
    model cannot be logged (the caller warns)."""
    task = build.context.task_record
    if not task.pipeline_task:
        print(f"note: task '{task.name}' names no pipeline_task: the run logs model/ as an "
              "artifact only, no MLflow Model")
        return None
    if tracker.down_since is not None:
        raise NotLoggable(f"the tracking server {tracker.tracking_uri} does not answer")
    tracker.flush()  # the final metrics are on the run before the model is linked to them
    trained = load_trained_model(task, saved, build.context, recipe.data)
    flavor = "transformers" if trained.adapter_dir is None and \
        pipeline_available(task.pipeline_task) else "pyfunc"
    client = tracker.client
    run = client.get_run(tracker.run_id)
    logged = client.create_logged_model(
        tracker.experiment_id,
        name=settings.registered_model_name or run.info.run_name or MODEL_NAME,
        source_run_id=tracker.run_id, params=dict(run.data.params),
        tags={**{k: v for k, v in run.data.tags.items()
                 if k in ("fturun.version", "fturun.task", "fturun.recipe_sha256")},
              RUN_DESCRIPTION: redact_text(logged_model_description(recipe.data, run))})
    kwargs = dict(name=logged.name,
                  input_example=redact_tree(input_examples(build, trained.tokenizer)),
                  pip_requirements=pip_requirements(trained.adapter_dir is not None),
                  metadata=redact_tree(model_metadata(task, trained, build.context, flavor)),
                  model_id=logged.model_id)
    # MLflow resolves models:/ URIs (when logging, when registering) on its global URI
    with using_tracking_uri(tracker.tracking_uri):
        with tempfile.TemporaryDirectory(prefix=".mlflow-model-", dir=tracker.output_dir) as tmp:
            try:
                if flavor == "transformers":
                    info = _log_flavor(trained, task, recipe.data, kwargs)
                else:
                    info = _log_wrapper(trained, task, recipe.data, tmp, kwargs)
            except BaseException:
                from mlflow.entities import LoggedModelStatus

                client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
                raise
        link_to_run(client, tracker.run_id, logged.model_id, step)
        result = {"model_uri": info.model_uri, "model_id": logged.model_id, "flavor": flavor,
                  "version": None,
                  "artifact_location": client.get_logged_model(logged.model_id).artifact_location}
        if settings.registered_model_name:
            from .model_registry import register_run_model

            version, evidence = register_run_model(client, settings, recipe, tracker.run_id,
                                                   logged.model_id,
                                                   build.context.label_names)
            result["version"] = version.version
            result["promotion"] = evidence
    return result


def _log_flavor(trained: TrainedModel, task, recipe_data: dict, kwargs: dict):
    """MLflow's transformers flavor of a pipeline for the task."""
    import mlflow.transformers
    from transformers import pipeline

    pipe = pipeline(task.pipeline_task, model=trained.model, tokenizer=trained.tokenizer)
    model_config = None
    if task.pipeline_task == "token-classification":
        model_config = dict(TOKEN_CLASSIFICATION_CONFIG)
    elif task.pipeline_task == "text-generation":
        model_config = {**generation_settings(recipe_data), "return_full_text": False}
    # a model that fails on its own examples is not logged (MLflow would only warn)
    pipe(kwargs["input_example"], **(model_config or {}))
    return mlflow.transformers.log_model(
        pipe, task=task.pipeline_task, model_config=model_config,
        model_card=model_card(recipe_data, task, trained), **kwargs)


def _log_wrapper(trained: TrainedModel, task, recipe_data: dict, tmp: str, kwargs: dict):
    """The pyfunc wrapper (:mod:`.pyfunc_model`) with the model, its tokenizer and a config."""
    import mlflow.pyfunc

    folder = os.path.join(tmp, "model")
    trained.model.save_pretrained(folder)
    trained.tokenizer.save_pretrained(folder)
    encoder_decoder = bool(getattr(trained.model.config, "is_encoder_decoder", False))
    config = {"model_class": task.model_class, "pipeline_task": task.pipeline_task,
              "max_length": (recipe_data.get("data") or {}).get("max_length", 128),
              "generation": generation_settings(recipe_data, encoder_decoder)}
    artifacts = {"model": folder,
                 "config": write_json(os.path.join(tmp, "fturun_model.json"), config)}
    if trained.adapter_dir:
        artifacts["adapter"] = trained.adapter_dir
    # the wrapper run here on the examples first: one that fails is not logged (MLflow would
    # only warn), and its answers give the signature
    from mlflow.models import infer_signature

    from .pyfunc_model import FturunModel

    wrapper = FturunModel()
    wrapper.load_context(SimpleNamespace(artifacts=artifacts))
    examples = kwargs["input_example"]
    signature = infer_signature(examples, wrapper.predict(None, examples))
    return mlflow.pyfunc.log_model(python_model=PYFUNC_CODE, artifacts=artifacts,
                                   signature=signature, **kwargs)


def load_trained_model(task, saved: dict, context, recipe_data: dict) -> TrainedModel:
    """The model the run saved, loaded from its folder on CPU: ``model-merged/``, else the
    adapter in ``model/`` merged into its base model (kept apart when it cannot be merged),
    else the full model in ``model/``. Raises :class:`NotLoggable`."""
    import transformers

    auto_class = getattr(transformers, task.model_class)
    params = component_ref(recipe_data["model"])[1] if recipe_data.get("model") else {}
    named = params.get("path") if isinstance(params.get("path"), str) else None
    options = {"dtype": "auto", "trust_remote_code": bool(params.get("trust_remote_code"))}
    if saved.get("merged model"):
        folder = saved["merged model"]
        trained = TrainedModel(auto_class.from_pretrained(folder, **options),
                               transformers.AutoTokenizer.from_pretrained(folder), named,
                               merged=True)
    elif saved.get("adapter"):
        trained = _merge_adapter(auto_class, saved["adapter"], context, options)
    elif saved.get("model"):
        folder = saved["model"]
        trained = TrainedModel(auto_class.from_pretrained(folder, **options),
                               transformers.AutoTokenizer.from_pretrained(folder), named)
    else:
        raise NotLoggable("no model was saved (output.save_model is false)")
    if trained.base:  # the model's source as the recipe names it, not this machine's folder
        trained.model.config.name_or_path = trained.model.name_or_path = trained.base
        trained.base_folder = _local_folder(context, trained.base)
    return trained


def _local_folder(context, name: str) -> str | None:
    """The folder a recipe's model name stands for here (None: a Hub name, or not here)."""
    try:
        location = context.resolve_path(name)
    except Exception:  # noqa: BLE001 - a package no longer installed: no local folder
        return None
    return location if os.path.isdir(location) else None


def _merge_adapter(auto_class, folder: str, context, options: dict) -> TrainedModel:
    """The adapter in ``folder`` on its base model (named in ``adapter_config.json``, found as
    the recipe finds paths), merged when the adapter type can be."""
    import transformers
    from peft import PeftModel

    config = read_json(os.path.join(folder, "adapter_config.json"), {})
    base = config.get("base_model_name_or_path")
    if not base:
        raise NotLoggable("the adapter's base model was built from a config and not saved; set "
                          "output.merge_adapter=true to log the merged model")
    labels = read_json(os.path.join(folder, "labels.json"), {})
    if "id2label" in labels:  # JSON keys are strings
        labels["id2label"] = {int(k): v for k, v in labels["id2label"].items()}
    location = _local_folder(context, base) or base
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    peft_model = PeftModel.from_pretrained(
        auto_class.from_pretrained(location, **options, **labels), folder)
    try:
        return TrainedModel(peft_model.merge_and_unload(), tokenizer, base, merged=True)
    except (AttributeError, ValueError, NotImplementedError):  # prompt learning: no weights
        # the base model as it was (peft wrapped the loaded one's head), the adapter beside it
        return TrainedModel(auto_class.from_pretrained(location, **options, **labels),
                            tokenizer, base, adapter_dir=folder)


def pipeline_available(pipeline_task: str) -> bool:
    """Whether the installed transformers has a pipeline for ``pipeline_task``."""
    from transformers.pipelines import SUPPORTED_TASKS, TASK_ALIASES

    return pipeline_task in SUPPORTED_TASKS or pipeline_task in TASK_ALIASES


#: the token columns a row's example text is decoded from, in this order: a task's own inputs,
#: a prompt (preference, kto), a prompt with its answer (what a reward model scores)
EXAMPLE_COLUMNS = ("input_ids", "prompt_ids", "chosen_ids")


def input_examples(build, tokenizer) -> list:
    """A few texts to show what the model takes: the recipe's generation prompts, else the
    start of the first eval (else train) rows, decoded (or their ``prompt`` text, for a task
    whose Trainer tokenizes itself)."""
    task = build.context.task_record
    prompts = (build.context.recipe.get("generation") or {}).get("prompts")
    if task.generates and prompts:
        return list(prompts[:EXAMPLE_ROWS])
    rows = build.splits.get("eval") or build.splits.get("train")
    texts = []
    for row in rows.select(range(min(EXAMPLE_ROWS, len(rows)))):
        column = next((c for c in EXAMPLE_COLUMNS if c in row), None)
        if column is not None:
            text = tokenizer.decode(row[column][:EXAMPLE_TOKENS], skip_special_tokens=True)
        else:
            prompt = row.get("prompt") or ""
            text = prompt if isinstance(prompt, str) else \
                "\n".join(str(turn.get("content", "")) for turn in prompt)
        if task.pipeline_task == "fill-mask":
            text = f"{text} {tokenizer.mask_token}"
        texts.append(text.strip() or "hello")
    return texts


def pip_requirements(peft: bool) -> list:
    """The packages the model needs, pinned to the versions it was trained with (a local
    version such as ``+cpu`` dropped: pip resolves the build of the machine it installs on)."""
    requirements = []
    for name in REQUIREMENTS + (("peft",) if peft else ()):
        try:
            version = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            continue
        requirements.append(f"{name}=={version}")
    return requirements


def model_metadata(task, trained: TrainedModel, context, flavor: str) -> dict:
    """The MLmodel's ``metadata``: what the model does and where it came from."""
    from .. import __version__

    adapter = context.recipe.get("adapter")
    adapter = adapter.get("name") if isinstance(adapter, dict) else adapter
    return {"fturun_version": __version__, "fturun_task": task.name,
            "pipeline_task": task.pipeline_task, "model_class": task.model_class,
            "base_model": trained.base, "adapter": adapter,
            "adapter_merged": trained.merged, "flavor": flavor,
            "labels": list(context.label_names or [])}


def model_card(recipe_data: dict, task, trained: TrainedModel):
    """A Hugging Face model card for the model (``model_card.md`` beside it): the recipe's
    description, the base model (and its licence, read from its own card), the task and the
    labels."""
    from huggingface_hub import ModelCard

    from .. import __version__

    header = ["library_name: transformers", f"pipeline_tag: {task.pipeline_task}",
              "tags: [fturun]"]
    readme = os.path.join(trained.base_folder or "", "README.md")
    if trained.base_folder and os.path.isfile(readme):
        license_name = ModelCard.load(readme).data.license
        if isinstance(license_name, str):
            header.append(f"license: {license_name}")
    source = f" from `{trained.base}`" if trained.base else ""
    merged = " (adapter merged)" if trained.merged else ""
    lines = ["---", *header, "---", "", f"# {recipe_data.get('description') or task.name}", "",
             f"Fine-tuned with fturun {__version__} for the task `{task.name}`{source}{merged}."]
    labels = getattr(trained.model.config, "id2label", None) or {}
    if task.labels and labels:
        lines += ["", "Labels: " + ", ".join(str(labels[k]) for k in sorted(labels)) + "."]
    return ModelCard(redact_text("\n".join(lines) + "\n"))  # the description may hold one
