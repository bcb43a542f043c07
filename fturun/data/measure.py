"""Per-row figures of a prepared split for the data report: each row tokenized whole (the
task's own ``tokenize`` with no effective length limit), then its length, the tokens
``data.max_length`` cuts off and, for conversations, its trained tokens before and after the
cut. A ``datasets`` map like the run's own, so a file-backed source is measured once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..chat.conversation import IGNORE

WHOLE = 1 << 30  # "no limit" for the whole-row tokenization


@dataclass
class Measured:
    """One split's per-row figures (lists, one entry per row, in split order).

    ``lengths``: tokens of the whole row; ``kept``: tokens after ``max_length`` (the whole row
    with ``data.block_size``, where nothing is cut); conversations only: ``trained`` /
    ``trained_kept``: trained tokens of the whole row / of the kept tokens, ``last_cut``: the
    last trained token lies beyond ``max_length`` (the last trained turn is cut)."""

    lengths: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    trained: list | None = None
    trained_kept: list | None = None
    last_cut: list | None = None


def whole_settings(settings):
    """``settings`` with no effective length limit and no padding or blocks."""
    target = WHOLE if settings.max_target_length is not None else None
    return replace(settings, max_length=WHOLE, padding=False, block_size=None,
                   max_target_length=target)


def measure_split(ds, split: str, task, tokenizer, settings) -> Measured | None:
    """The :class:`Measured` figures of the prepared split ``ds``; None when the task's
    tokenized rows have no ``input_ids`` (nothing to count)."""
    whole = task.tokenize(ds, tokenizer, whole_settings(settings), split)
    if "input_ids" not in whole.column_names:
        return None
    chat = bool(settings.chat_format) and "labels" in whole.column_names
    limit = None if settings.block_size else settings.max_length
    figures = whole.map(_row_figures, batched=True, remove_columns=list(whole.column_names),
                        fn_kwargs={"limit": limit, "chat": chat},
                        desc=f"{split}: lengths")
    columns = figures.to_dict()
    measured = Measured(lengths=columns["length"], kept=columns["kept"])
    if chat:
        measured.trained, measured.trained_kept = columns["trained"], columns["trained_kept"]
        measured.last_cut = columns["last_cut"]
    return measured


def _row_figures(batch, limit, chat):
    out = {"length": [], "kept": []}
    if chat:
        out.update(trained=[], trained_kept=[], last_cut=[])
    for i, ids in enumerate(batch["input_ids"]):
        n = len(ids)
        kept = n if limit is None else min(n, limit)
        out["length"].append(n)
        out["kept"].append(kept)
        if chat:
            labels = batch["labels"][i]
            trained = [j for j, label in enumerate(labels) if label != IGNORE]
            out["trained"].append(len(trained))
            out["trained_kept"].append(sum(1 for j in trained if j < kept))
            out["last_cut"].append(bool(trained) and trained[-1] >= kept)
    return out
