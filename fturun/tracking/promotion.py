"""Promotion on evidence: an alias (``champion``) moves to a new model version only when that
version is at least as good as the one the alias points at, on the same eval data.

The evidence is one metric and its direction: ``tracking.promote_on`` (``{"metric":
"eval_accuracy", "greater_is_better": true}``), else the recipe's
``training.metric_for_best_model`` (with ``greater_is_better``), else ``eval_loss``, lower being
better. Each registered version carries its basis as tags (``fturun.promote_metric``,
``fturun.promote_greater_is_better``) so that ``fturun promote`` weighs a run after the fact
the way its run would have. Two versions whose eval datasets differ (another digest) are not
comparable: the alias stays where it is, and the message says why."""

from __future__ import annotations

from dataclasses import dataclass

METRIC_TAG = "fturun.promote_metric"
DIRECTION_TAG = "fturun.promote_greater_is_better"
DECISION_TAG = "fturun.promotion"  # on a version: what happened to the alias, and why


@dataclass
class Evidence:
    """What the alias does for a new version, and the sentence that says why."""

    alias: str
    move: bool
    reason: str
    current: str | None = None  # the version the alias pointed at (None: no such alias yet)
    metric: str = "eval_loss"
    new_value: float | None = None
    old_value: float | None = None


def promotion_basis(recipe_data: dict) -> tuple:
    """``(metric, greater_is_better)`` a recipe's versions are compared on."""
    promote_on = (recipe_data.get("tracking") or {}).get("promote_on") or {}
    if promote_on.get("metric"):
        metric = _eval_name(promote_on["metric"])
        return metric, bool(promote_on.get("greater_is_better", not metric.endswith("loss")))
    training = recipe_data.get("training") or {}
    metric = _eval_name(training.get("metric_for_best_model") or "loss")
    greater = training.get("greater_is_better")
    return metric, bool(greater) if greater is not None else not metric.endswith("loss")


def basis_tags(recipe_data: dict) -> dict:
    """The version tags recording :func:`promotion_basis`."""
    metric, greater = promotion_basis(recipe_data)
    return {METRIC_TAG: metric, DIRECTION_TAG: str(greater).lower()}


def basis_of_version(version) -> tuple:
    """``(metric, greater_is_better)`` recorded on a model version (``eval_loss``, lower being
    better, for a version registered before fturun recorded it)."""
    tags = version.tags or {}
    metric = tags.get(METRIC_TAG) or "eval_loss"
    greater = tags.get(DIRECTION_TAG)
    return metric, (greater == "true") if greater else not metric.endswith("loss")


def _eval_name(metric: str) -> str:
    return metric if metric.startswith(("eval_", "test_")) else f"eval_{metric}"


def eval_digest(run) -> str | None:
    """The digest of run ``run``'s eval dataset input (None when it logged none)."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    for entry in inputs:
        if any(t.key == "mlflow.data.context" and t.value == "eval" for t in entry.tags):
            return entry.dataset.digest
    return None


def weigh(client, name: str, alias: str, run, metric: str, greater_is_better: bool,
          new_version: str) -> Evidence:
    """Whether ``alias`` of registered model ``name`` should move to ``new_version`` (the
    version of ``run``), on ``metric``."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return Evidence(alias, True, f"{alias} -> v{new_version} (the first version under "
                                     f"{alias})", None, metric, run.data.metrics.get(metric))
    evidence = Evidence(alias, False, "", str(current.version), metric,
                        run.data.metrics.get(metric))
    if str(current.version) == str(new_version):
        evidence.move, evidence.reason = True, f"{alias} is already on v{new_version}"
        return evidence
    old_run = client.get_run(current.run_id) if current.run_id else None
    evidence.old_value = old_run.data.metrics.get(metric) if old_run else None
    stays = f"{alias} stays on v{current.version}"
    if evidence.new_value is None:
        evidence.reason = f"{stays}: the new version has no {metric} to compare"
    elif evidence.old_value is None:
        evidence.reason = f"{stays}: v{current.version} has no {metric} to compare with"
    elif old_run is not None and eval_digest(old_run) != eval_digest(run):
        evidence.reason = (f"{stays}: not comparable, v{current.version} was evaluated on "
                           f"other eval data (digest {eval_digest(old_run)} vs "
                           f"{eval_digest(run)})")
    else:
        new, old = evidence.new_value, evidence.old_value
        better = new >= old if greater_is_better else new <= old
        sign = (">=" if greater_is_better else "<=") if better else \
            ("<" if greater_is_better else ">")
        if better:
            evidence.move = True
            evidence.reason = (f"{alias} -> v{new_version}: {metric} {new:.4g} {sign} "
                               f"{old:.4g} of v{current.version}")
        else:
            evidence.reason = f"{stays}: {metric} {new:.4g} {sign} {old:.4g}"
    return evidence
