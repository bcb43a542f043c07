"""Tracking off (disabled by the recipe, or not rank 0 of a launch): the tracker that does
nothing, so a session never asks whether it tracks."""

from __future__ import annotations


class NullTracker:
    """Tracking disabled (or not rank 0): every call does nothing."""

    run_id = None
    experiment_id = None
    tracking_uri = None
    artifact_failures = ()

    def __init__(self, output_dir: str | None = None):
        self.output_dir = output_dir

    def callback(self):
        """No callback."""
        return

    def log_params(self, params: dict) -> None:
        """Nothing."""

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Nothing."""

    def continue_from(self, step: int) -> None:
        """Nothing."""

    def set_tags(self, tags: dict) -> None:
        """Nothing."""

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Nothing."""

    def log_input(self, *args, **kwargs) -> None:
        """Nothing."""

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing to send."""
        return True

    def close(self, status: str, error: str | None = None) -> None:
        """Nothing."""
