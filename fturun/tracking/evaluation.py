"""An evaluation run as MLflow records it: tagged as an evaluation of a model, the model
linked (MLflow 3: the run takes the logged model as an input and the metrics are the model's),
the metrics of each split at step 0 and the predictions files as artifacts."""

from __future__ import annotations

import time

#: tags of an evaluation run (``fturun runs`` and the UI tell it from a training run)
EVALUATION_TAG = "fturun.evaluation"


def evaluation_tags(source) -> dict:
    """The tags of an evaluation run of ``source`` (a
    :class:`~fturun.run.model_ref.ModelSource`)."""
    tags = {EVALUATION_TAG: "true", "fturun.evaluated_model": source.ref,
            "fturun.evaluated_kind": source.kind}
    if source.run_id:
        tags["fturun.evaluated_run"] = source.run_id
    if source.model_id:
        tags["fturun.evaluated_model_id"] = source.model_id
    return tags


def log_evaluation(tracker, metrics: dict, model_id: str | None) -> None:
    """The metrics (numbers only) of the evaluation run at step 0; with ``model_id`` they are
    the logged model's metrics too, and the model is one of the run's inputs."""
    values = {k: float(v) for k, v in metrics.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not model_id or not tracker.run_id:
        tracker.log_metrics(values, 0)
        return
    from mlflow.entities import LoggedModelInput, Metric

    now = int(time.time() * 1000)
    client = tracker.client
    client.log_inputs(tracker.run_id, models=[LoggedModelInput(model_id)])
    client.log_batch(tracker.run_id, metrics=[
        Metric(key, value, now, 0, run_id=tracker.run_id, model_id=model_id)
        for key, value in values.items()])
