"""What ``fturun runs`` and ``fturun rerun`` ask of a tracking server, as data (the commands
print it): the fturun runs of an experiment, and the recipe a run was made with."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..core.errors import RecipeRuntimeError, UsageError
from ..core.suggest import suggest
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
    overrides: str = ""  # the command line's KEY=VALUE overrides (secrets redacted)
    kind: str = "run"  # "run", "search" (a study's parent run), "trial" (one of its runs) or
    #: "evaluation" (``fturun evaluate``)
    parent_run_id: str = ""  # a trial's study run
    best: dict | None = None  # a search: {"metric", "value", "trial", "run_id"} of its best trial
    start_time: str = ""  # ISO 8601, UTC
    end_time: str = ""
    user: str = ""
    key_metric: dict | None = None  # {"name", "value"}: what the run's versions are promoted on
    models: list = field(default_factory=list)  # [{"name", "version", "aliases"}] registered


def open_client(uri: str | None = None):
    """``(MlflowClient, uri)`` for ``uri`` (default: :func:`default_tracking_uri`), after
    checking that its store is there (:func:`~fturun.tracking.settings.check_reachable`)."""
    uri = uri or default_tracking_uri()
    check_reachable(uri, reading=True)  # its runs are there already: nothing to create
    with store_errors(uri):
        return mlflow_client(uri), uri


@contextmanager
def store_errors(uri: str):
    """The block's MLflow store failures (an MLflow error, a database error) as one paragraph
    naming the URI, a :class:`RecipeRuntimeError` (exit 1), not a traceback."""
    try:
        yield
    except Exception as exc:
        kind = type(exc).__module__.split(".")[0]
        if kind not in ("mlflow", "sqlalchemy", "sqlite3"):
            raise
        first = " ".join(str(exc).split("\n")[0].split())[:300]
        raise RecipeRuntimeError(f"the MLflow store at {uri} failed ({type(exc).__name__}: "
                                 f"{first}); check the tracking URI and that its store is "
                                 "reachable and writable") from None


def list_runs(client, experiment: str | None = None, max_results: int = 20, *,
              user: str | None = None, status: str | None = None,
              since_ms: int | None = None) -> list:
    """The fturun runs (:class:`RunRow`) of ``experiment`` (default: every experiment), newest
    first, at most ``max_results``; only ``user``'s, of ``status``, started since ``since_ms``
    (epoch milliseconds) when given. Raises :class:`UsageError` for an unknown experiment."""
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
    where = ["tags.`fturun.version` != ''"]
    if user:
        where.append(f"tags.`mlflow.user` = '{_quoted(user)}'")
    if status:
        where.append(f"attributes.status = '{_quoted(status.upper())}'")
    if since_ms is not None:
        where.append(f"attributes.start_time >= {int(since_ms)}")
    runs = client.search_runs([e.experiment_id for e in experiments],
                              filter_string=" and ".join(where),
                              order_by=["attributes.start_time DESC"], max_results=max_results)
    names = {e.experiment_id: e.name for e in experiments}
    rows = [run_row(run, names.get(run.info.experiment_id, "?")) for run in runs]
    for row in rows:
        row.models = registered_versions(client, row.run_id)
    return rows


def _quoted(text: str) -> str:
    return str(text).replace("'", "\\'")


def registered_versions(client, run_id: str) -> list:
    """``[{"name", "version", "aliases"}]`` of the model versions made from run ``run_id``."""
    try:
        versions = client.search_model_versions(f"run_id = '{run_id}'")
    except Exception:  # noqa: BLE001 - a store without a registry: no versions to show
        return []
    found = []
    for v in versions:
        aliases = list(getattr(v, "aliases", None) or [])
        if not aliases:
            try:
                aliases = list(client.get_model_version(v.name, v.version).aliases or [])
            except Exception:  # noqa: BLE001 - shown without aliases
                aliases = []
        found.append({"name": v.name, "version": str(v.version), "aliases": sorted(aliases)})
    return sorted(found, key=lambda m: (m["name"], int(m["version"])))


def run_row(run, experiment: str) -> RunRow:
    """The :class:`RunRow` of one MLflow run (``experiment``: its experiment's name)."""
    tags = run.data.tags
    parent = tags.get("mlflow.parentRunId", "")
    kind = "search" if tags.get("fturun.search") == "true" else ("trial" if parent else "run")
    if tags.get("fturun.evaluation") == "true":  # fturun evaluate's run of a trained model
        kind = "evaluation"
    best = None
    if kind == "search" and "best_value" in run.data.metrics:
        best = {"metric": run.data.params.get("search.resolved.metric", "value"),
                "value": run.data.metrics["best_value"],
                "trial": _int_or_none(tags.get("fturun.best_trial")),
                "run_id": tags.get("fturun.best_run_id") or None}
    return RunRow(run_id=run.info.run_id, experiment=experiment, name=run.info.run_name or "",
                  status=run.info.status, metrics=result_metrics(run.data.metrics),
                  recipe_path=tags.get("fturun.recipe_path", ""),
                  overrides=tags.get("fturun.overrides", ""), kind=kind, parent_run_id=parent,
                  best=best, start_time=_iso(run.info.start_time),
                  end_time=_iso(run.info.end_time), user=tags.get("mlflow.user", ""),
                  key_metric=_key_metric(run))


def _iso(ms) -> str:
    from datetime import datetime, timezone

    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _key_metric(run) -> dict | None:
    """The metric the run's versions are promoted on (``tracking.promote_on``, else
    ``training.metric_for_best_model``, else ``eval_loss``) and its final value."""
    params = run.data.params
    name = params.get("tracking.promote_on.metric") or \
        params.get("training.metric_for_best_model") or "loss"
    name = name if name.startswith(("eval_", "test_")) else f"eval_{name}"
    value = run.data.metrics.get(name)
    return None if value is None else {"name": name, "value": value}


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


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


#: the original run's tags a rerun copies under ``fturun.rerun_of.*`` (its name there)
PROVENANCE_TAGS = {"fturun.recipe_path": "recipe_path", "fturun.recipe_sha256": "recipe_sha256",
                   "fturun.git_commit": "git_commit", "fturun.git_dirty": "git_dirty"}
RERUN_TAG = "fturun.rerun_of"


def copy_provenance(recipe, run) -> dict:
    """Tag ``recipe``'s rerun of ``run`` (an MLflow ``Run``) with where the original came from:
    ``fturun.rerun_of.recipe_path``, ``.recipe_sha256``, ``.git_commit``, ``.git_dirty`` (and
    ``.source.git.*`` from MLflow's source tags), replacing those of an older rerun the recipe
    carries; and name it ``<the original's name>-rerun`` unless an override names
    ``tracking.run_name``. Returns the tags set."""
    tracking = recipe.data.setdefault("tracking", {})
    tags = tracking.setdefault("tags", {})
    for key in [k for k in tags if k.startswith(RERUN_TAG + ".")]:
        del tags[key]
    copied = {f"{RERUN_TAG}.{name}": run.data.tags[key] for key, name in PROVENANCE_TAGS.items()
              if run.data.tags.get(key)}
    copied.update({f"{RERUN_TAG}.source.git.{key.rsplit('.', 1)[1]}": value
                   for key, value in run.data.tags.items()
                   if key.startswith("mlflow.source.git.") and value})
    tags.update(copied)
    if not any(o.partition("=")[0].strip() == "tracking.run_name" for o in recipe.overrides):
        tracking["run_name"] = f"{run.info.run_name or run.info.run_id[:8]}-rerun"
    return copied


def hold_alias(recipe) -> str | None:
    """A rerun keeps the original's registration but never moves its alias unless an override
    asks (``tracking.registered_model_alias=...``): drop the alias from ``recipe`` otherwise.
    Returns the alias dropped (None: none, or the override asked for one)."""
    if any(o.partition("=")[0].strip() == "tracking.registered_model_alias"
           for o in recipe.overrides):
        return None
    return (recipe.data.get("tracking") or {}).pop("registered_model_alias", None)


def prepare_rerun(recipe, run_id: str, uri: str, original: str | None) -> str:
    """Make ``recipe`` (fetched by :func:`fetch_run_recipe`) run like the original: relative
    data paths found from the original recipe's folder, tracked on the same server unless the
    recipe says otherwise, tagged ``fturun.rerun_of``, and trained into a folder of its own
    (``<the original's folder>-rerun-<run id>``, then ``-2``, ...) unless an override names
    ``training.output_dir``: the original's checkpoints and model stay as they are. Returns
    the rerun's output folder."""
    if original:
        recipe.base_dir = os.path.dirname(original)
    tracking = recipe.data.setdefault("tracking", {})
    tracking.setdefault("tracking_uri", uri)
    tracking.setdefault("tags", {})["fturun.rerun_of"] = run_id
    training = recipe.data.setdefault("training", {})
    if any(o.partition("=")[0].strip() == "training.output_dir" for o in recipe.overrides):
        return training["output_dir"]
    # the original's folder: its training.output_dir, else fturun's default (outputs/<stem>)
    stem = os.path.splitext(os.path.basename(recipe.path))[0] or "run"
    base = f"{training.get('output_dir') or os.path.join('outputs', stem)}-rerun-{run_id[:8]}"
    folder, n = base, 1
    while os.path.exists(folder):
        n += 1
        folder = f"{base}-{n}"
    training["output_dir"] = folder
    return folder
