"""The thread that sends a run's metrics to MLflow, so that training never waits for the server.

What is queued within :data:`SEND_INTERVAL` seconds of the first value goes in one request (one
per :data:`METRIC_BATCH` values), not one request per logged step: on a small machine each
request costs the training loop CPU, in this thread and in a local server. :meth:`flush` sends
what is gathered at once and waits for it."""

from __future__ import annotations

import queue
import threading
import time

METRIC_BATCH = 1000  # MLflow's limit on metrics per log_batch
SEND_INTERVAL = 5.0  # seconds the thread gathers metrics before it sends them
_FLUSH = object()  # queued by flush(): send what was gathered now
_CLOSE = object()  # queued by close(): send what was gathered, then end


class MetricSender:
    """A daemon thread calling ``send(batch)`` (a list of MLflow ``Metric`` s, at most
    :data:`METRIC_BATCH`; ``send`` keeps what fails) with what was queued by :meth:`put`."""

    def __init__(self, send, interval: float = SEND_INTERVAL):
        self.send = send
        self.interval = interval
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fturun-mlflow", daemon=True)
        self._thread.start()

    def put(self, items: list) -> None:
        """Queue metrics; returns at once."""
        self._queue.put(items)

    def flush(self, timeout: float) -> bool:
        """Send what is queued now and wait until it is sent; False on timeout."""
        self._queue.put(_FLUSH)
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """End the thread once what is queued is sent (without waiting for it)."""
        self._queue.put(_CLOSE)

    def _run(self) -> None:
        closed = False
        while not closed:
            items, taken, deadline = [], 0, None
            while len(items) < METRIC_BATCH:
                try:
                    more = self._queue.get(timeout=None if deadline is None else
                                           max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break  # the interval is over
                taken += 1
                if more is _FLUSH or more is _CLOSE:
                    closed = more is _CLOSE
                    break
                items.extend(more)
                deadline = deadline or time.monotonic() + self.interval
            try:
                for i in range(0, len(items), METRIC_BATCH):
                    self.send(items[i:i + METRIC_BATCH])
            finally:  # an entry is done once it is sent (what flush waits for)
                for _ in range(taken):
                    self._queue.task_done()
