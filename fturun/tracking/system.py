"""System metrics of a tracked run through MLflow's own monitor: CPU, memory, disk and network
(and GPU with ``nvidia-ml-py`` on an NVIDIA machine) as ``system/...`` metrics, sampled by a
thread of its own every ``$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (MLflow's default
10). On by default; ``tracking.system_metrics: false`` switches it off. A resumed run continues
the step count where it stopped."""

from __future__ import annotations

import sys


class SystemMetrics:
    """MLflow's ``SystemMetricsMonitor`` of one run, started and stopped with it."""

    def __init__(self, monitor):
        self.monitor = monitor

    @classmethod
    def start(cls, run_id: str, tracking_uri: str, resumed: bool = False) -> SystemMetrics | None:
        """Start monitoring run ``run_id``; None (with a warning) when MLflow's monitor cannot
        start here, which never stops the run."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(run_id, resume_logging=resumed,
                                           tracking_uri=tracking_uri)
            monitor.start()
        except Exception as exc:  # noqa: BLE001 - e.g. psutil missing: the run goes on
            print(f"warning: MLflow system metrics are off for this run ({type(exc).__name__}: "
                  f"{exc}); set tracking.system_metrics=false to silence this", file=sys.stderr)
            return None
        return cls(monitor)

    def stop(self, wait: bool = True) -> None:
        """Stop the monitor; ``wait``: send what it sampled since its last batch (only while
        the server answers: a server that is down would hold the end of the run)."""
        if wait:
            self.monitor.finish()
        else:
            self.monitor._shutdown_event.set()  # the daemon thread ends at its next wake-up
