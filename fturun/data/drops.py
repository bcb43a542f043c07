"""What the data pipeline read and dropped, per source: the rows of each source as loaded, and
each reason rows were dropped for, with their count and first row numbers (counting from 0 in
the source), for the data report (:mod:`fturun.data.report`)."""

from __future__ import annotations

from dataclasses import dataclass, field

SHOWN_ROWS = 5  # row numbers kept per reason


@dataclass
class Drop:
    """Rows of ``source`` dropped for ``reason``: ``count`` of them, the first ``rows``."""

    source: str
    reason: str
    count: int
    rows: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON form."""
        return {"reason": self.reason, "count": self.count, "first_rows": list(self.rows)}


@dataclass
class DataLog:
    """Rows read per source (``train``, ``eval``, ``test``, ``train[1]``) and the drops."""

    read: dict = field(default_factory=dict)
    drops: list = field(default_factory=list)

    def dropped(self, source: str) -> int:
        """Rows of ``source`` dropped, every reason together."""
        return sum(d.count for d in self.drops if d.source == source)


def data_log(context) -> DataLog:
    """The context's :class:`DataLog` (made on first use)."""
    if getattr(context, "data_log", None) is None:
        context.data_log = DataLog()
    return context.data_log


def record_read(context, source: str, rows: int) -> None:
    """``source`` gave ``rows`` rows (before any is dropped)."""
    data_log(context).read[source] = rows


def record_drop(context, source: str, reason: str, count: int, rows) -> None:
    """``count`` rows of ``source`` dropped for ``reason``; ``rows``: their row numbers (the
    first :data:`SHOWN_ROWS` are kept)."""
    if count:
        data_log(context).drops.append(Drop(source, reason, count, list(rows)[:SHOWN_ROWS]))


def failing_rows(ds, predicate, fn_kwargs: dict, limit: int = SHOWN_ROWS) -> list:
    """The first ``limit`` row numbers of ``ds`` for which the batched ``predicate`` (the one
    a ``filter`` kept rows by) is False."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        flags = ds.map(lambda batch: {"keep": predicate(batch, **fn_kwargs)}, batched=True,
                       remove_columns=list(ds.column_names), keep_in_memory=True)["keep"]
    finally:
        if bars:
            datasets.enable_progress_bars()
    return [i for i, keep in enumerate(flags) if not keep][:limit]
