"""Step 4: eval and test splits carved out of the train source, then ``max_*_samples``."""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError

SPLITS = ("train", "eval", "test")


def split_train(sources: dict, split_cfg: dict, seed: int, task, context=None) -> dict:
    """Carve ``split.test`` then ``split.eval`` out of the train source (seeded; stratified by
    label when ``split.stratify`` and the task's rows have labels)."""
    splits = dict(sources)
    train = splits["train"]
    total = len(train)
    stratify = bool(split_cfg.get("stratify")) and task.labels is not None
    for part in ("test", "eval"):
        size = split_cfg.get(part)
        if size is None:
            continue
        n = _rows(size, total)
        if n < 1 or n >= len(train):
            raise RecipeRuntimeError(
                f"data.split.{part}={size} gives {n} of the {len(train):,} remaining train "
                f"rows; choose a size that leaves rows on both sides")
        try:
            parts = train.train_test_split(
                test_size=n, seed=seed, stratify_by_column="labels" if stratify else None)
        except ValueError as exc:
            hint = (" (stratified splits need at least 2 rows per label and a split at least "
                    "as large as the number of labels; set data.split.stratify=false or use a "
                    "larger split)" if stratify else "")
            raise RecipeRuntimeError(f"cannot split data.split.{part}={size}: {exc}{hint}") \
                from None
        train, splits[part] = parts["train"], parts["test"]
    splits["train"] = train
    return {split: splits[split] for split in SPLITS if split in splits}


def _rows(size, total: int) -> int:
    """A split size as a row count: a fraction of ``total`` below 1, else a count."""
    if size < 1:
        return int(round(size * total))
    return int(size)


def subsample(ds, limit: int, seed: int):
    """At most ``limit`` rows of ``ds``: a seeded shuffle, then the first ``limit`` rows."""
    if limit >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(int(limit)))
