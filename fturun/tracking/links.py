"""Links into MLflow's UI that open its training view. MLflow 3.17's UI starts in its GenAI mode
whatever the experiment's kind tag says (a training run listed under "Evaluation runs", the
registry out of the sidebar); a URL with ``workflowType=machine_learning`` opens the view for
model training, and the UI keeps that choice. Only an HTTP tracking server has a UI to link
to: for a file or SQLite store these return None (``mlflow ui`` serves one)."""

from __future__ import annotations

from urllib.parse import quote

#: the query that opens MLflow's UI on its training (not GenAI) view
TRAINING_VIEW = "workflowType=machine_learning"


def _base(tracking_uri: str) -> str | None:
    uri = (tracking_uri or "").rstrip("/")
    return uri if uri.startswith(("http://", "https://")) else None


def experiment_link(tracking_uri: str, experiment_id: str) -> str | None:
    """The experiment's page, on the training view."""
    base = _base(tracking_uri)
    return f"{base}/#/experiments/{experiment_id}?{TRAINING_VIEW}" if base else None


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page, on the training view."""
    base = _base(tracking_uri)
    return (f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"
            if base else None)


def model_version_link(tracking_uri: str, name: str, version) -> str | None:
    """A registered model version's page, on the training view."""
    base = _base(tracking_uri)
    return (f"{base}/#/models/{quote(name, safe='')}/versions/{version}?{TRAINING_VIEW}"
            if base else None)
