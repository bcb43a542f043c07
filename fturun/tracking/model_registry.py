"""The Model Registry as a team uses it: each run's MLflow Model a new version of
``tracking.registered_model_name``, with the recipe's ``description`` as the version's
description and tags saying how good it is and where it came from (eval and test metrics,
recipe sha256, fturun version, task, git commit); ``tracking.registered_model_alias`` (e.g.
``champion``) moved to the new version when the evidence says it is at least as good
(:mod:`.promotion`); and ``fturun promote RUN_ID ALIAS``, which points an alias at a tracked
run's version after the fact (registering the run's model first when needed), showing the same
comparison and needing ``force`` for a worse version."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..core.errors import UsageError
from ..core.redaction import redact_text
from .promotion import (
    DECISION_TAG,
    Evidence,
    basis_of_version,
    basis_tags,
    eval_digest,
    promotion_basis,
    weigh,
)
from .queries import result_metrics
from .settings import alias_problem, model_name_problem, using_tracking_uri

#: run tags copied to each model version
VERSION_TAG_KEYS = ("fturun.version", "fturun.task", "fturun.recipe_sha256", "fturun.git_commit",
                    "fturun.git_dirty")
MAX_DESCRIPTION = 5000  # what a registry description holds safely


@dataclass
class Promotion:
    """What ``fturun promote`` did."""

    name: str
    version: str
    alias: str
    run_id: str
    registered: bool  # the run's model was registered by the promotion itself
    previous: str | None  # the version the alias pointed at before
    evidence: Evidence | None = None  # the comparison with that version


def version_tags(run) -> dict:
    """The tags of a run's model version: its final eval/test metrics and where it came from
    (the run, its overrides and user, the eval data's digest, the recipe's sha256, the git
    commit; a rerun's original's recipe and git tags, ``fturun.rerun_of.*``)."""
    tags = {key: run.data.tags[key] for key in VERSION_TAG_KEYS if key in run.data.tags}
    tags.update({key: value for key, value in run.data.tags.items()
                 if key.startswith("fturun.rerun_of")})
    tags.update({key: f"{value:.6g}" for key, value in result_metrics(run.data.metrics).items()})
    tags["fturun.run_id"] = run.info.run_id
    tags["fturun.overrides"] = run.data.tags.get("fturun.overrides") or "none"
    if run.data.tags.get("mlflow.user"):
        tags["fturun.user"] = run.data.tags["mlflow.user"]
    digest = eval_digest(run)
    if digest:
        tags["fturun.eval_digest"] = digest
    return tags


def version_description(description: str | None, run, metric: str) -> str:
    """A version's description: the recipe's, then what tells this version from the others:
    its overrides, its data's rows per split, its value of the metric it is promoted on."""
    rows = []
    for entry in (run.inputs.dataset_inputs if run.inputs else []):
        try:
            count = json.loads(entry.dataset.profile or "{}").get("num_rows")
        except ValueError:
            count = None
        if count is not None:
            rows.append(f"{entry.dataset.name} {count} rows")
    value = run.data.metrics.get(metric)
    parts = [f"overrides: {run.data.tags.get('fturun.overrides') or 'none'}",
             f"data: {', '.join(rows) or 'not recorded'}",
             f"{metric}: {value:.4g}" if value is not None else f"{metric}: not logged"]
    head = (description or "").strip()
    return (f"{head}\n\n" if head else "") + "; ".join(parts)


def registered_model_text(recipe_data: dict, labels) -> tuple:
    """``(description, tags)`` of a registered model fturun creates: what it is and does."""
    task = recipe_data.get("task", "sequence-classification")
    described = (recipe_data.get("description") or "").strip()
    text = f"A {task} model fine-tuned with fturun; each version is one run (its description " \
           "says its overrides, data and metric; its tags, where it came from)."
    tags = {"fturun.task": task}
    if labels:
        tags["fturun.labels"] = ", ".join(map(str, labels))[:MAX_DESCRIPTION]
        text += f" Labels: {tags['fturun.labels']}."
    return redact_text(f"{described}\n\n{text}" if described else text), tags


def register_version(client, name: str, model_id: str, run, description: str | None = None,
                     extra_tags: dict | None = None, created: tuple = (None, None)):
    """A new version of registered model ``name`` (created when missing, with ``created``:
    its description and tags) for the logged model ``model_id`` of ``run``, with
    :func:`version_tags` (and ``extra_tags``); returns the ``ModelVersion``."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, tags=created[1], description=created[0])
        except MlflowException:  # another run created it meanwhile
            client.get_registered_model(name)
    with using_tracking_uri(client.tracking_uri):  # where MLflow looks the model up
        return client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run.info.run_id,
            tags={**version_tags(run), **(extra_tags or {})},
            description=(description or "")[:MAX_DESCRIPTION] or None, model_id=model_id)


def register_run_model(client, settings, recipe, run_id: str, model_id: str,
                       labels=None) -> tuple:
    """Register the run's logged model under ``tracking.registered_model_name`` and move
    ``tracking.registered_model_alias`` to the new version when the evidence says it is at
    least as good (:func:`~.promotion.weigh`; the decision is the version's
    ``fturun.promotion`` tag). Returns ``(ModelVersion, Evidence or None)``."""
    run = client.get_run(run_id)
    name = settings.registered_model_name
    basis = basis_tags(recipe.data)
    metric, _ = promotion_basis(recipe.data)
    version = register_version(client, name, model_id, run,
                               redact_text(version_description(recipe.data.get("description"),
                                                               run, metric)),
                               basis, registered_model_text(recipe.data, labels))
    evidence = None
    if settings.registered_model_alias:
        metric, greater = basis_of_version(version)
        evidence = weigh(client, name, settings.registered_model_alias, run, metric, greater,
                         str(version.version))
        if evidence.move:
            client.set_registered_model_alias(name, settings.registered_model_alias,
                                              version.version)
        client.set_model_version_tag(name, version.version, DECISION_TAG, evidence.reason)
    return version, evidence


def promote_run(client, run_id: str, alias: str, name: str | None = None,
                force: bool = False) -> Promotion:
    """Point ``alias`` of the registered model at run ``run_id``'s model version (the version
    registered under ``name`` when given; the run's logged model is registered under ``name``
    first when it has no version there), when it is at least as good as the version the alias
    points at (:func:`~.promotion.weigh`) or ``force``. Raises :class:`UsageError` saying what
    to do."""
    problem = alias_problem(alias)
    if problem:
        raise UsageError(f"alias {problem}")
    problem = model_name_problem(name) if name is not None else None
    if problem:
        raise UsageError(f"--name {problem}")
    run = _get_run(client, run_id)
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    if name:
        versions = [v for v in versions if v.name == name]
    registered = False
    if not versions:
        if not name:
            raise UsageError(f"run {run_id} has no registered model version (it ran without "
                             "tracking.registered_model_name); name the registered model to "
                             "register its model under: fturun promote RUN_ID ALIAS --name NAME")
        versions = [register_version(client, name, _logged_model_id(client, run), run,
                                     run.data.tags.get("mlflow.note.content"))]
        registered = True
    names = sorted({v.name for v in versions})
    if len(names) > 1:
        raise UsageError(f"run {run_id} is registered under {', '.join(names)}; choose one "
                         "with --name NAME")
    version = max(versions, key=lambda v: int(v.version))
    previous = _alias_version(client, version.name, alias)
    metric, greater = basis_of_version(version)
    evidence = weigh(client, version.name, alias, run, metric, greater, str(version.version))
    if not evidence.move and not force:
        raise UsageError(f"{version.name}@{evidence.reason}; --force promotes v{version.version} "
                         "anyway")
    client.set_registered_model_alias(version.name, alias, version.version)
    return Promotion(version.name, str(version.version), alias, run_id, registered, previous,
                     evidence)


def _get_run(client, run_id: str):
    try:
        return client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - mlflow raises its own exception types per store
        raise UsageError(f"no run '{run_id}' at {client.tracking_uri}: {exc}") from None


def _logged_model_id(client, run) -> str:
    """The id of the MLflow Model run ``run`` logged (the latest, if several)."""
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise UsageError(f"run {run.info.run_id} logged no MLflow Model (it ran with "
                         "tracking.log_model=false, or before fturun logged MLflow Models); "
                         "nothing to register")
    return max(outputs, key=lambda o: o.step).model_id


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
