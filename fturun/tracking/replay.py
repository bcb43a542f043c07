"""What a resumed (or reattached) MLflow run must not log twice.

A run resumed from its checkpoint at step N replays the steps after N that the interrupted run
had already logged. ``metrics.jsonl`` is cut back to the steps up to N (rewritten whole), and
since MLflow cannot delete a value, the values the run already holds are not sent again: per
metric, nothing up to the last step it holds. Each step of each metric is then logged once.
The rows up to N that never reached the run (sent in batches, a kill can beat the next batch; or
kept during an outage) are sent from ``metrics.jsonl`` (:func:`unsent`)."""

from __future__ import annotations

import os

from ..core.io import read_lines, write_lines


def trim_metrics_file(path: str, step: int) -> list:
    """Keep the rows of ``metrics.jsonl`` up to ``step`` (the file rewritten atomically; a row
    cut by a crash is dropped). Returns the rows it keeps."""
    rows = [row for row in read_lines(path) if _step(row) <= step]
    if os.path.exists(path):
        write_lines(path, rows)
    return rows


def unsent(rows, held: dict, key=str) -> list:
    """``(key, value, step)`` of the numeric values in ``rows`` past the last step the run
    holds for their metric (``held``: ``{MLflow key: last step}``; ``key`` maps a row's key to
    its MLflow key)."""
    return [(name, float(value), _step(row)) for row in rows for name, value in row.items()
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
            and _step(row) > held.get(key(name), -1)]


def last_steps(rows) -> dict:
    """``{key: last step}`` of rows such as ``{"step": 3, "loss": 0.5}``."""
    last = {}
    for row in rows:
        for key in row:
            if key != "step":
                last[key] = max(_step(row), last.get(key, -1))
    return last


def logged_steps(client, run_id: str) -> dict:
    """``{key: last step}`` of the metrics MLflow run ``run_id`` holds (``{}`` when the server
    does not answer: its outage is reported by the tracker's next call)."""
    try:
        return {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
                for key in client.get_run(run_id).data.metrics}
    except Exception:  # noqa: BLE001 - a tracking outage must not stop a resume
        return {}


def _step(row) -> int:
    step = row.get("step", 0)
    return step if isinstance(step, int) else 0
