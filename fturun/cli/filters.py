"""The arguments of ``fturun runs``, and the types of its filters: a run status, and a start
time as a date, a date and time, or an age (``30m``, ``12h``, ``7d``); a bad value is a usage
error (exit 2) saying what is accepted."""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime, timezone

from .common import whole_number

STATUSES = ("finished", "failed", "running", "killed", "scheduled")
_AGE = re.compile(r"^(\d+)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def run_status(value: str) -> str:
    """An MLflow run status, any case; the accepted ones listed otherwise."""
    if value.lower() not in STATUSES:
        raise argparse.ArgumentTypeError(f"'{value}' is not a run status; use one of "
                                         f"{', '.join(STATUSES)}")
    return value.upper()


def since_ms(value: str, now: float | None = None) -> int:
    """Epoch milliseconds of ``value``: an age before ``now`` (``30m``, ``12h``, ``7d``), or an
    ISO date / date and time (UTC unless it says otherwise)."""
    now = time.time() if now is None else now
    match = _AGE.match(value.strip())
    if match:
        return int((now - int(match.group(1)) * _UNIT_SECONDS[match.group(2)]) * 1000)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{value}' is neither a date (2026-12-01), a date and time (2026-12-01T09:00) nor "
            "an age (30m, 12h, 7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def add_runs_arguments(runs, uri_help: str) -> None:
    """The arguments of ``fturun runs``."""
    runs.add_argument("experiment", nargs="?", metavar="EXPERIMENT",
                      help="only this experiment (default: every experiment)")
    runs.add_argument("--tracking-uri", metavar="URI", help=uri_help)
    runs.add_argument("--max", type=whole_number(1), default=20, metavar="N",
                      help="at most N runs (default 20)")
    runs.add_argument("--json", action="store_true",
                      help="print the runs as JSON (every metric, tag-derived field, start and "
                           "end time, user, registered versions and aliases) for scripts")
    runs.add_argument("--wide", action="store_true",
                      help="every field, full run ids, whatever the terminal's width (default: "
                           "fitted to 100 columns)")
    runs.add_argument("--mine", action="store_true", help="only the runs I started")
    runs.add_argument("--status", metavar="STATUS", type=run_status,
                      help="only runs of this status: finished, failed, running, killed")
    runs.add_argument("--since", metavar="WHEN", type=since_ms,
                      help="only runs started since WHEN: a date (2026-12-01), a date and time "
                           "(2026-12-01T09:00), or an age (30m, 12h, 7d)")
