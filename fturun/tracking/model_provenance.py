"""Where a run's MLflow Model came from, on the model itself: its description (the recipe's, the
task, the data, the run), and the run's final eval/test metrics linked to it, each with the
dataset it was measured on."""

from __future__ import annotations

from .queries import result_metrics

RUN_DESCRIPTION = "mlflow.note.content"  # the tag MLflow's UI shows as a description


def logged_model_description(recipe_data: dict, run) -> str:
    """The logged model's description: the recipe's, the task, the data it was trained and
    evaluated on, and the run it came from."""
    data = [f"{i.dataset.name} ({i.dataset.source})"
            for i in (run.inputs.dataset_inputs if run.inputs else [])]
    text = (f"{recipe_data.get('task', 'sequence-classification')} model fine-tuned with fturun "
            f"by run {run.info.run_name or run.info.run_id}; data: "
            f"{', '.join(data) or 'not recorded'}")
    described = (recipe_data.get("description") or "").strip()
    return f"{described}\n\n{text}" if described else text


def link_to_run(client, run_id: str, model_id: str, step: int) -> None:
    """Make the model run ``run_id``'s output at ``step`` and link the run's final eval and test
    metrics to it (their last values, as logged). MLflow's own linking (``log_model`` with a
    run) would take every metric logged at that step, system metrics included, whose steps
    count samples rather than training steps."""
    from mlflow.entities import LoggedModelOutput, Metric

    client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])
    run = client.get_run(run_id)
    datasets = {}  # context -> (name, digest): the eval_ metrics linked to the eval data
    for entry in (run.inputs.dataset_inputs if run.inputs else []):
        context = {t.key: t.value for t in entry.tags}.get("mlflow.data.context")
        datasets.setdefault(context, (entry.dataset.name, entry.dataset.digest))
    linked = []
    for key in result_metrics(run.data.metrics):
        last = max(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        name, digest = datasets.get(key.split("_", 1)[0], (None, None))
        linked.append(Metric(key, last.value, last.timestamp, last.step, run_id=run_id,
                             model_id=model_id, dataset_name=name, dataset_digest=digest))
    if linked:
        client.log_batch(run_id, metrics=linked)
