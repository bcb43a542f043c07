"""``data.limits``: figures of the data report a run must stay within, checked before the model
loads. A set limit that is broken stops the run (exit 2) naming the split, the figure and the
limit; without limits a run only warns, at 10% truncated rows and 1% of eval/test rows also in
train."""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError

#: limit -> (figure of a split, "max" or "min", what the figure is, for a person)
LIMITS = {
    "max_truncated_share": ("truncated_share", "max", "rows cut by data.max_length"),
    "max_dropped_share": ("dropped_share", "max", "rows dropped"),
    "max_duplicate_share": ("duplicate_share", "max", "rows repeating another row"),
    "min_trained_share": ("trained_share", "min", "tokens trained on"),
}
#: a second figure a limit also bounds: eval/test rows also in train
ALSO = {"max_duplicate_share": ("leaked_share", "eval/test rows also in train")}
#: warnings without a limit: figure -> (threshold, what it counts)
WARN_AT = {"truncated_share": (0.10, "of the rows truncated"),
           "leaked_share": (0.01, "of the rows also in train")}
FIXES = {
    "truncated_share": "raise data.max_length (see the lengths above), shorten the texts",
    "dropped_share": "fix the rows named above",
    "duplicate_share": "remove the repeated rows",
    "leaked_share": "remove the rows train shares with this split",
    "trained_share": "raise data.max_length, or set data.train_on",
}


class DataLimitError(RecipeRuntimeError):
    """The data breaks a ``data.limits`` limit: a recipe matter (exit 2), found before the
    model loads."""

    exit_code = 2


def split_limits(limits: dict, split: str) -> dict:
    """The limits of ``split``: ``data.limits`` with ``data.limits.<split>`` over them."""
    values = {k: v for k, v in (limits or {}).items() if k in LIMITS}
    values.update((limits or {}).get(split) or {})
    return values


def figure_of(report: dict, split: str, figure: str):
    """A split's figure in the report (None where it has none, e.g. trained_share of a
    classification split). ``dropped_share``: the largest of the split's own drops and its
    sources' (``train`` and each source of a mix, ``train[i]``)."""
    figures = report["splits"].get(split) or {}
    if figure == "duplicate_share":
        return (figures.get("duplicates") or {}).get("duplicate_share")
    if figure == "leaked_share":
        return (figures.get("duplicates") or {}).get("leaked_share")
    if figure == "dropped_share":
        shares = [figures.get("dropped_share") or 0.0]
        shares += [s.get("dropped_share") or 0.0 for name, s in
                   (report.get("sources") or {}).items()
                   if name == split or name.startswith(f"{split}[")]
        return max(shares)
    return figures.get(figure)


def _where(split: str, limits: dict, limit: str) -> str:
    nested = (limits or {}).get(split) or {}
    return f"data.limits.{split}.{limit}" if limit in nested else f"data.limits.{limit}"


def check_limits(report: dict, limits: dict | None,
                 stops: str = "before loading the model") -> list:
    """Raise :class:`DataLimitError` listing every broken limit (the run ``stops`` ...);
    return the warnings (lines) of the default thresholds a split passes where no limit of its
    own is set."""
    broken, warnings = [], []
    for split in report["splits"]:
        mine = split_limits(limits, split)
        for limit, (figure, kind, what) in LIMITS.items():
            checks = [(figure, what)] + ([ALSO[limit]] if limit in ALSO else [])
            for name, about in checks:
                value = figure_of(report, split, name)
                if value is None or limit not in mine:
                    continue
                bound = mine[limit]
                if (value > bound) if kind == "max" else (value < bound):
                    word = "more" if kind == "max" else "less"
                    broken.append(
                        f"data.{split}: {100 * value:.1f}% {about} ({name}={value:g}), "
                        f"{word} than {_where(split, limits, limit)}={bound:g}; "
                        f"{FIXES[name]}, or change the limit")
        warnings.extend(_warnings(report, split, mine))
    if broken:
        raise DataLimitError(
            f"the data breaks its limits, so the run stops {stops}:\n  "
            + "\n  ".join(broken))
    return warnings


def _bounded(limits: dict) -> set:
    """The figures the given limits bound."""
    figures = {LIMITS[name][0] for name in limits if name in LIMITS}
    return figures | {ALSO[name][0] for name in limits if name in ALSO}


def _warnings(report: dict, split: str, limits: dict) -> list:
    """Lines for the default thresholds a split passes (:data:`WARN_AT`) where no limit bounds
    the figure."""
    lines = []
    for figure, (threshold, what) in WARN_AT.items():
        value = figure_of(report, split, figure)
        if value is None or value <= threshold or figure in _bounded(limits):
            continue
        lines.append(f"warning: data.{split}: {100 * value:.1f}% {what} ({figure}="
                     f"{value:g}, above {threshold:g}); {FIXES[figure]}; data.limits stops a "
                     "run beyond a limit you set")
    return lines
