"""Bounded resources before tokenizing: the room the tokenized rows need, and the lengths the
model can embed.

Sources stream into Arrow files (memory-mapped), and tokenization writes its result next to
them; a dataset whose tokenized form would not fit fails before the work, saying what to change.
"""

from __future__ import annotations

import os

from ..core.errors import RecipeRuntimeError
from ..core.resources import available_memory, free_bytes, human_bytes

SIZE_SAMPLE_ROWS = 64  # rows tokenized to measure the bytes a tokenized row takes
SIZE_MARGIN = 1.2  # Arrow offsets, cache metadata


def check_room(ds, split: str, task, tokenizer, settings) -> None:
    """Raise :class:`RecipeRuntimeError` when tokenizing ``ds`` would need more room than is
    free where the result goes: the disk of its Arrow cache files, or memory for an in-memory
    dataset. The size of a tokenized row is measured on a few rows, tokenized in memory by
    ``task.tokenize``."""
    import datasets

    rows = len(ds)
    if rows == 0:
        return
    n = min(rows, SIZE_SAMPLE_ROWS)
    sample = datasets.Dataset.from_list(ds.select(range(n)).to_list(), features=ds.features)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # no bar for the sample
    try:
        tokenized = task.tokenize(sample, tokenizer, settings, split)
    finally:
        if bars:
            datasets.enable_progress_bars()
    needed = tokenized.data.nbytes / n * rows * SIZE_MARGIN
    if ds.cache_files:
        folder = os.path.dirname(ds.cache_files[0]["filename"])
        free, where = free_bytes(folder), f"of disk in {folder}"
        fix = ", or set HF_DATASETS_CACHE to a folder on a larger disk"
    else:
        free, where, fix = available_memory(), "of memory", ""
    if needed > free:
        raise RecipeRuntimeError(
            f"data.{split}: tokenizing {rows:,} rows needs about {human_bytes(needed)} {where}, "
            f"but only {human_bytes(free)} is free there; set data.max_{split}_samples, lower "
            f"data.max_length{fix}")


def max_positions(model) -> int | None:
    """The number of positions the model can embed (``max_position_embeddings``, GPT-2's
    ``n_positions``), or None when it has no such limit (relative positions, e.g. T5)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_model_positions(settings, model) -> None:
    """``data.block_size``, ``data.max_length`` and ``data.max_target_length`` must fit the
    model's position embeddings: say so before anything is tokenized (else an index error deep
    inside the model's forward). ``settings``: a :class:`fturun.plugin.tasks.TokenizeSettings`."""
    limit = max_positions(model)
    if limit is None:
        return
    for key in ("block_size", "max_length", "max_target_length"):
        value = getattr(settings, key)
        if value is not None and value > limit:
            raise RecipeRuntimeError(
                f"data.{key}={value} is larger than the model's maximum of {limit} positions "
                f"({type(model.config).__name__}.max_position_embeddings); set data.{key} to "
                f"at most {limit}")
