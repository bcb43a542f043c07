"""The study's MLflow parent run: created by the process that created the study (its id kept in
the study's user attributes), reattached by the processes that join it; every trial is a child
run nested under it."""

from __future__ import annotations

import sys
import time

from ..tracking import NullTracker, Tracker, TrackingSettings, check_recipe_store, flatten
from .study import safe_url

#: study user attributes: the MLflow parent run (shared by every process of the study)
PARENT_ATTR = "fturun.mlflow_parent_run_id"
URI_ATTR = "fturun.mlflow_tracking_uri"
PARENT_WAIT_S = 60  # a joining process waits this long for the creator's parent run


def check_tracking_reachable(recipe) -> None:
    """Fail within seconds when the study's tracking server does not answer."""
    check_recipe_store(recipe)


def open_parent(study, created, recipe, plan, output_dir, plugins):
    """The study's MLflow parent run: created by the process that created the study (its id kept
    in the study's user attributes), reattached by the processes that join it."""
    settings = TrackingSettings.from_recipe(recipe)
    if not settings.active:
        if created:
            study.set_user_attr(PARENT_ATTR, "")
        return NullTracker()
    uri = settings.tracking_uri
    tracker = None
    if not created:
        run_id = _wait_for_parent(study)
        if run_id and study.user_attrs.get(URI_ATTR) == uri:
            tracker = _attach(run_id, uri, output_dir)
    if tracker is None:
        tracker = Tracker.open(recipe, output_dir, resume=False, plugins=plugins,
                               run_name=plan.study_name,  # the study names it (README)
                               extra_tags={"fturun.search": "true",
                                           "fturun.study": plan.study_name,
                                           "fturun.study_storage": safe_url(plan.storage)})
        if created or not study.user_attrs.get(PARENT_ATTR):
            study.set_user_attr(URI_ATTR, uri)
            study.set_user_attr(PARENT_ATTR, tracker.run_id)
    params = flatten(recipe.data)
    params.update({"search.resolved.metric": plan.metric_key,
                   "search.resolved.direction": plan.direction,
                   "search.resolved.n_trials": plan.n_trials,
                   "search.resolved.study_name": plan.study_name,
                   "search.resolved.storage": safe_url(plan.storage),
                   "search.resolved.pruner_startup_trials": plan.startup_trials})
    tracker.log_params(params)
    return tracker


def _wait_for_parent(study) -> str | None:
    """The parent run id the study's creator stored ("" when it tracks nothing), waiting for it
    a while when the creator is starting at the same time."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while True:
        attrs = study.user_attrs
        if PARENT_ATTR in attrs:
            return attrs[PARENT_ATTR] or None
        if time.monotonic() > deadline:
            print(f"note: the study has no MLflow parent run after {PARENT_WAIT_S}s; this "
                  "process starts one", file=sys.stderr)
            return None
        time.sleep(0.5)


def _attach(run_id, uri, output_dir):
    try:
        return Tracker.attach(run_id, uri, output_dir)
    except Exception as exc:  # noqa: BLE001 - the run was deleted, or another server
        print(f"note: cannot reattach the study's MLflow run {run_id} ({exc}); starting one",
              file=sys.stderr)
        return None
