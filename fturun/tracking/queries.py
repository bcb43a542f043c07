"""What ``fturun runs`` and ``fturun rerun`` ask of a tracking server, as data (the commands
print it): the fturun runs of an experiment, and the recipe a run was made with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import UsageError
from ..registry import suggest
from .settings import check_reachable, default_tracking_uri, mlflow_client

RESOLVED_ARTIFACT = "recipe/resolved.json"  # what log_run_results logs: the resolved recipe
SKIPPED_METRIC_ENDINGS = ("runtime", "per_second", "epoch")  # timings, not results


@dataclass
class RunRow:
    """One fturun run as ``fturun runs`` lists it."""

    run_id: str
    experiment: str
    name: str
    status: str
    metrics: dict = field(default_factory=dict)  # final eval_/test_ metrics, sorted by name
    recipe_path: str = ""


def open_client(uri: str | None = None):
    """``(MlflowClient, uri)`` for ``uri`` (default: :func:`default_tracking_uri`), after
    checking that an HTTP server answers."""
    uri = uri or default_tracking_uri()
    check_reachable(uri)
    return mlflow_client(uri), uri


def list_runs(client, experiment: str | None = None, max_results: int = 20) -> list:
    """The fturun runs (:class:`RunRow`) of ``experiment`` (default: every experiment), newest
    first, at most ``max_results``. Raises :class:`UsageError` for an unknown experiment."""
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = [e.name for e in client.search_experiments()]
            raise UsageError(f"no experiment '{experiment}' at {client.tracking_uri}"
                             f"{suggest(experiment, names)}; experiments: "
                             f"{', '.join(names) or 'none'}")
        experiments = [found]
    else:
        experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments],
                              filter_string="tags.`fturun.version` != ''",
                              order_by=["attributes.start_time DESC"], max_results=max_results)
    names = {e.experiment_id: e.name for e in experiments}
    return [RunRow(run_id=run.info.run_id, experiment=names.get(run.info.experiment_id, "?"),
                   name=run.info.run_name or "", status=run.info.status,
                   metrics=result_metrics(run.data.metrics),
                   recipe_path=run.data.tags.get("fturun.recipe_path", ""))
            for run in runs]


def result_metrics(metrics: dict) -> dict:
    """The eval_/test_ results among a run's metrics (timings left out), sorted by name."""
    return {k: v for k, v in sorted(metrics.items())
            if k.startswith(("eval_", "test_")) and not k.endswith(SKIPPED_METRIC_ENDINGS)}


def fetch_run_recipe(client, run_id: str, folder: str | None = None) -> tuple:
    """Download the resolved recipe of run ``run_id`` into ``folder`` (default: a new temporary
    folder), named as the original recipe file (``rerun.json`` when unknown). Returns ``(path,
    original recipe path or None)``; raises :class:`UsageError` when there is no such run or it
    has no recipe."""
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - mlflow raises its own exception types per store
        raise UsageError(f"no run '{run_id}' at {client.tracking_uri}: {exc}") from None
    if folder is None:
        import tempfile

        folder = tempfile.mkdtemp(prefix="fturun-rerun-")
    try:
        path = client.download_artifacts(run_id, RESOLVED_ARTIFACT, folder)
    except Exception:  # noqa: BLE001 - any failure: no such artifact
        raise UsageError(f"run '{run_id}' has no {RESOLVED_ARTIFACT} artifact: it was not made "
                         "by fturun") from None
    original = run.data.tags.get("fturun.recipe_path")
    named = os.path.join(folder, os.path.basename(original) if original else "rerun.json")
    os.replace(path, named)
    return named, original


def prepare_rerun(recipe, run_id: str, uri: str, original: str | None) -> None:
    """Make ``recipe`` (fetched by :func:`fetch_run_recipe`) run like the original: relative
    data paths found from the original recipe's folder, tracked on the same server unless the
    recipe says otherwise, tagged ``fturun.rerun_of``."""
    if original:
        recipe.base_dir = os.path.dirname(original)
    tracking = recipe.data.setdefault("tracking", {})
    tracking.setdefault("tracking_uri", uri)
    tracking.setdefault("tags", {})["fturun.rerun_of"] = run_id
