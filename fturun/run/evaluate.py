"""``fturun evaluate RECIPE --model REF``: a trained model scored on the recipe's data, with no
training and no optimizer state.

The recipe's data, tokenization, batching, precision defaults and metrics are built as for a
run (:func:`~fturun.run.build.build_run`), with the model taken from REF
(:mod:`.model_ref`): a full model loaded through the ``pretrained`` component from its folder,
an adapter loaded as trained on the recipe's base model (not merged, so its numbers are the
training run's own). The eval (and test) split goes through ``Trainer.predict`` (the same
evaluation loop as ``Trainer.evaluate``), plus a causal LM's generation-based evaluation. The
evaluation is an MLflow run tagged ``fturun.evaluation`` with the model linked, the datasets as
inputs, the metrics and the predictions files; the metrics are printed beside the model's
training-time ones when the data is the same.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field

from ..core.dist import is_main_process
from ..core.errors import UsageError
from ..core.io import read_json, write_json
from ..plugin.tasks import get_task
from ..recipe.refs import component_ref
from ..tracking import NullTracker, Tracker, flatten
from ..tracking.evaluation import evaluation_tags, log_evaluation
from ..tracking.queries import result_metrics
from .build import build_run, default_output_dir, make_trainer
from .generation_eval import generation_eval_callback
from .model_ref import ModelSource, check_task
from .outcome import closing, oom_as_advice

#: ``model.params`` of the recipe's ``pretrained`` model that still apply to a trained folder
KEPT_MODEL_PARAMS = ("dtype", "trust_remote_code", "attn_implementation", "allow_pickle")
RESULT_FILE = "evaluation.json"


@dataclass
class Evaluation:
    """What an evaluation produced."""

    metrics: dict = field(default_factory=dict)  # eval_* and test_* metrics
    training_metrics: dict = field(default_factory=dict)  # the model's own, same data only
    same_data: bool = False
    files: list = field(default_factory=list)
    run_id: str | None = None
    tracking_uri: str | None = None
    output_dir: str = ""


def evaluation_recipe(recipe, source: ModelSource):
    """A copy of ``recipe`` whose model is ``source``'s: a full model's folder through the
    ``pretrained`` component; for an adapter the recipe's base model, its ``adapter`` section
    dropped (the trained adapter is loaded on it instead). Nothing is merged or saved."""
    data = copy.deepcopy(recipe.data)
    data.pop("adapter", None)
    data.pop("output", None)
    if not source.adapter:
        name, params = component_ref(data["model"])
        kept = {k: params[k] for k in KEPT_MODEL_PARAMS if name == "pretrained" and k in params}
        data["model"] = {"name": "pretrained", "params": {"path": source.folder, **kept}}
    return dataclasses.replace(recipe, data=data)


def evaluate_model(recipe, registry, source: ModelSource, output_dir: str | None = None,
                   plugins=()) -> Evaluation:
    """Evaluate ``source`` on ``recipe``'s eval (and test) data; see the module docstring.
    Raises :class:`UsageError` when the model does not fit the recipe (another task, other
    labels) and when the recipe has no eval or test data."""
    task = get_task(registry, recipe.data.get("task", "sequence-classification"))
    check_task(source, task, recipe.path)
    output_dir = output_dir or default_output_dir(recipe) + "-evaluate"
    os.makedirs(output_dir, exist_ok=True)
    evaluated = evaluation_recipe(recipe, source)
    run_name = f"evaluate-{(source.run_id or os.path.basename(source.folder))[:8]}"
    tracker = Tracker.open(evaluated, output_dir, resume=False, plugins=plugins,
                           run_name=run_name, extra_tags=evaluation_tags(source))
    result = Evaluation(output_dir=output_dir, tracking_uri=getattr(tracker, "tracking_uri",
                                                                    None),
                        run_id=tracker.run_id)
    with oom_as_advice(), closing(tracker):
        build = build_run(evaluated, registry, output_dir, tracker=tracker)
        if source.adapter:
            load_adapter(build, source.folder)
        check_labels(build, source)
        if not any(build.splits.get(s) is not None for s in ("eval", "test")):
            raise UsageError(f"{recipe.path}: no eval or test data to evaluate on; set "
                             "data.eval (any dataset component), data.test or data.split.eval")
        trainer = make_trainer(build)
        log_start(tracker, evaluated, build)
        for split in ("eval", "test"):
            if build.splits.get(split) is not None:
                metrics, path = _score_split(trainer, build, registry, split, output_dir)
                result.metrics.update(metrics)
                result.files += [path] if path else []
        result.same_data = same_data(source, recipe.data)
        if result.same_data:
            result.training_metrics = dict(source.metrics)
        _record(tracker, source, result)
    return result


def load_adapter(build, folder: str) -> None:
    """The trained adapter in ``folder`` loaded onto the build's base model (in place of the
    model the Trainer is given)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(build.model, folder)
    build.model = build.context.model = build.trainer_kwargs["model"] = model


def check_labels(build, source: ModelSource) -> None:
    """The classes (tags) of the recipe's data must be the model's, in the same order: a
    model trained on other labels would be scored against the wrong ids."""
    labels = list(build.context.label_names or [])
    saved = read_json(os.path.join(source.folder, "config.json"), None) or \
        read_json(os.path.join(source.folder, "labels.json"), None) or {}
    id2label = saved.get("id2label") or {}
    if not labels or not id2label:
        return
    model_labels = [id2label[k] for k in sorted(id2label, key=int)]
    if model_labels != labels:
        raise UsageError(f"model '{source.ref}' was trained on the labels {model_labels}, the "
                         f"recipe's data has {labels}: evaluate it on data of its labels (or "
                         "set data.labels to its list)")


def log_start(tracker, recipe, build) -> None:
    """The evaluation's params (the recipe flattened) and its eval/test datasets as inputs."""
    from ..data import dataset_inputs

    tracker.log_params(flatten(recipe.data))
    for name, ref, ds, split in dataset_inputs(recipe.data["data"], build.splits, None):
        if split in ("eval", "test"):
            tracker.log_input(name, ref, ds, split)


def _score_split(trainer, build, registry, split: str, output_dir: str) -> tuple:
    """``(metrics, predictions file or None)`` of one split: ``Trainer.predict`` (the
    evaluation loop of ``Trainer.evaluate``), a causal LM's generated answers scored on the
    eval split, the task's predictions written as JSON lines."""
    prediction = trainer.predict(build.splits[split], metric_key_prefix=split)
    metrics = dict(prediction.metrics)
    if split == "eval":
        callback = generation_eval_callback(build, registry)
        if callback is not None:
            callback.on_evaluate(trainer.args, trainer.state, trainer.control, metrics=metrics,
                                 model=trainer.model, processing_class=build.tokenizer)
    writer = build.context.task_record.write_predictions
    path = None
    if writer is not None and is_main_process():
        path = os.path.join(output_dir, f"{split}_predictions.jsonl")
        writer(prediction, build.context, path)
    return metrics, path


def same_data(source: ModelSource, data: dict) -> bool:
    """Whether the recipe's ``data`` section is the one the model was trained and scored with
    (then its training-time metrics are comparable)."""
    trained = (source.recipe or {}).get("data")
    return trained is not None and trained == data.get("data")


def _record(tracker, source: ModelSource, result: Evaluation) -> None:
    """``evaluation.json`` (the metrics, the model's training-time ones on the same data, the
    model) written and logged with the predictions files and the metrics."""
    path = write_json(os.path.join(result.output_dir, RESULT_FILE), {
        "model": source.ref, "kind": source.kind, "folder": source.folder,
        "run_id": source.run_id, "model_id": source.model_id, "metrics": result.metrics,
        "same_data": result.same_data, "training_metrics": result.training_metrics})
    result.files.append(path)
    if isinstance(tracker, NullTracker):
        return
    log_evaluation(tracker, result.metrics, source.model_id)
    for file in result.files:
        tracker.log_artifact(file, "evaluation")


def comparison_rows(result: Evaluation) -> list:
    """``[(metric, value, training-time value or None)]`` of the results, timings left out."""
    shown = {k: v for k, v in result_metrics(result.metrics).items()
             if not k.endswith("preparation_time")}
    return [(key, value, result.training_metrics.get(key)) for key, value in shown.items()]
