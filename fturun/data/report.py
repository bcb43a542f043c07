"""The data report's figures: per split, the rows read and dropped (the reason, the first row
numbers), token lengths against ``data.max_length``, truncation, the trained share of
conversations, labels, duplicates and leakage, empty texts and packing. Pure arithmetic on what
:mod:`.measure`, :mod:`.duplicates` and :mod:`.drops` gathered; :mod:`.reporting` runs it."""

from __future__ import annotations

import random

from .drops import SHOWN_ROWS

BLOCK_BATCH = 1000  # rows per batch when rows are cut into blocks (task_language_model)
DEFAULT_BATCH = 8  # TrainingArguments' per-device batch size


def share(part, whole) -> float:
    """``part / whole`` rounded for a report (0 when ``whole`` is 0)."""
    return round(part / whole, 6) if whole else 0.0


def length_stats(lengths: list) -> dict:
    """min, median, p90, p99, max and mean of token lengths (nearest-rank percentiles)."""
    if not lengths:
        return {}
    ordered = sorted(lengths)
    n = len(ordered)

    def rank(p):  # nearest rank: the smallest length with at least p% of the rows at or below
        return ordered[max(0, min(n - 1, -(-p * n // 100) - 1))]

    return {"min": ordered[0], "median": rank(50), "p90": rank(90), "p99": rank(99),
            "max": ordered[-1], "mean": round(sum(ordered) / n, 2)}


def first(flags) -> list:
    """The first :data:`SHOWN_ROWS` row numbers whose flag is true."""
    return [i for i, flag in enumerate(flags) if flag][:SHOWN_ROWS]


def length_figures(measured, max_length: int | None) -> dict:
    """Lengths, truncation and (conversations) trained share of one split's measured rows."""
    lengths, kept = measured.lengths, measured.kept
    cut = [n > k for n, k in zip(lengths, kept)]
    tokens, kept_tokens = sum(lengths), sum(kept)
    out = {"lengths": length_stats(lengths), "max_length": max_length, "tokens": tokens,
           "kept_tokens": kept_tokens, "truncated_rows": sum(cut),
           "truncated_share": share(sum(cut), len(lengths)),
           "lost_tokens": tokens - kept_tokens,
           "lost_token_share": share(tokens - kept_tokens, tokens),
           "first_truncated_rows": first(cut)}
    if measured.trained is not None:
        untrained = [t == 0 for t in measured.trained_kept]
        # over the rows the run keeps: it drops those with no trained token left
        trained_rows_tokens = sum(k for k, none in zip(kept, untrained) if not none)
        out.update(
            trained_tokens=sum(measured.trained_kept),
            trained_share=share(sum(measured.trained_kept), trained_rows_tokens),
            trained_tokens_lost=sum(measured.trained) - sum(measured.trained_kept),
            last_turn_cut_rows=sum(measured.last_cut),
            last_turn_cut_share=share(sum(measured.last_cut), len(lengths)),
            first_last_turn_cut_rows=first(measured.last_cut),
            untrained_rows=sum(untrained), first_untrained_rows=first(untrained))
    return out


def packing_figures(measured, split: str, recipe_data: dict, training: dict,
                    seed: int) -> dict:
    """How much of what the model processes is real tokens: blocks (``data.block_size``: the
    tokens kept in whole blocks), packing (``data.packing``: no padding), else padding (each
    batch padded to its longest row, or every row to ``max_length``)."""
    kept = measured.kept
    block = recipe_data.get("block_size")
    if block:
        in_blocks = sum(sum(kept[i:i + BLOCK_BATCH]) // block * block
                        for i in range(0, len(kept), BLOCK_BATCH))
        total = sum(kept)
        return {"mode": "blocks", "block_size": block, "blocks": in_blocks // block,
                "dropped_tokens": total - in_blocks, "efficiency": share(in_blocks, total)}
    if recipe_data.get("packing") and split == "train":
        return {"mode": "packing", "efficiency": 1.0,
                "padded_efficiency": _padded(kept, split, recipe_data, training, seed)}
    return {"mode": "padding", "efficiency": _padded(kept, split, recipe_data, training, seed)}


def _padded(kept: list, split: str, recipe_data: dict, training: dict, seed: int) -> float:
    """Real tokens over padded tokens: batches of the per-device batch size (train rows in a
    seeded shuffle, as the sampler draws them; eval/test in order)."""
    if not kept:
        return 0.0
    if recipe_data.get("padding") == "max_length":
        return share(sum(kept), len(kept) * recipe_data.get("max_length", 128))
    key = "per_device_train_batch_size" if split == "train" else "per_device_eval_batch_size"
    batch = training.get(key)
    batch = batch if isinstance(batch, int) and batch > 0 else DEFAULT_BATCH  # "auto": the plan's
    order = list(kept)
    if split == "train":
        random.Random(seed).shuffle(order)
    padded = sum(max(order[i:i + batch]) * len(order[i:i + batch])
                 for i in range(0, len(order), batch))
    return share(sum(order), padded)


def label_figures(ds, label_names) -> dict | None:
    """``{"counts": {label: rows}}`` of a split's ``labels`` column (classes by name; tags
    counted per word); None without labels."""
    if "labels" not in ds.column_names or not label_names:
        return None
    counts = dict.fromkeys(label_names, 0)
    for value in ds["labels"]:
        for label in value if isinstance(value, list) else [value]:
            if label is None or label < 0:
                continue
            name = label_names[label] if label < len(label_names) else str(label)
            counts[name] = counts.get(name, 0) + 1
    return {"counts": counts}


def unseen_labels(labels: dict) -> None:
    """Add ``unseen_in_train`` to each eval/test split's labels: its labels with rows there and
    none in train (the model never saw them)."""
    train = (labels.get("train") or {}).get("counts") or {}
    for split, figures in labels.items():
        if split == "train" or figures is None:
            continue
        figures["unseen_in_train"] = sorted(name for name, n in figures["counts"].items()
                                            if n and not train.get(name))


def empty_turns(ds) -> dict | None:
    """Conversations with an empty or whitespace-only turn (assistant turns are refused
    earlier); None for other rows (their empty texts are dropped by the columns step)."""
    if "messages" not in ds.column_names:
        return None
    flags = [any(not str(m.get("content") or "").strip() for m in messages)
             for messages in ds["messages"]]
    return {"rows": sum(flags), "first_rows": first(flags)}


def source_figures(data_log) -> dict:
    """Rows read and dropped per source, with the reasons and first row numbers."""
    sources = {}
    for source, read in (data_log.read.items() if data_log else ()):
        drops = [d.as_dict() for d in data_log.drops if d.source == source]
        dropped = data_log.dropped(source)
        sources[source] = {"read": read, "dropped": dropped,
                           "dropped_share": share(dropped, read), "reasons": drops}
    return sources
