"""Tokenized splits written once and read by later runs: ``fturun data RECIPE --write DIR``
writes them, a recipe with ``data.preprocessed: DIR`` reads them instead of reading and
tokenizing its sources (every node of a multi-node launch reads the same folder).

``DIR/fturun-preprocessed.json`` records what the splits were made from: the task, the seed,
the recipe's ``data`` section (without ``preprocessed`` and ``limits``, which do not change the
rows) and the tokenizer's digest (vocabulary, added tokens, chat template). A run whose recipe
or tokenizer differs is refused, naming what changed."""

from __future__ import annotations

import json
import os

from ..core.errors import RecipeRuntimeError
from ..core.io import read_json, write_json
from .fingerprint import tokenizer_digest
from .histogram import HISTOGRAM_FILE

MANIFEST = "fturun-preprocessed.json"
REPORT_FOLDER = "report"  # the data report written with the splits
FORMAT = 1
#: data keys that do not change the tokenized rows
UNCHANGING = ("preprocessed", "limits")


def data_identity(recipe: dict) -> dict:
    """What the tokenized splits depend on in the recipe: task, seed and the data section."""
    data = {k: v for k, v in (recipe.get("data") or {}).items() if k not in UNCHANGING}
    return {"task": recipe.get("task", "sequence-classification"),
            "seed": recipe.get("seed", 42), "data": data}


def write_preprocessed(folder: str, splits: dict, report: dict, context, tokenizer) -> dict:
    """Save the tokenized ``splits`` (``datasets`` ``save_to_disk``), the report and the
    manifest in ``folder``; returns the manifest."""
    os.makedirs(folder, exist_ok=True)
    for split, ds in splits.items():
        ds.save_to_disk(os.path.join(folder, split))
    manifest = {"format": FORMAT, "identity": data_identity(context.recipe),
                "tokenizer": tokenizer_digest(tokenizer),
                "label_names": list(context.label_names or []),
                "model_kwargs": context.model_kwargs,
                "samples": json.loads(json.dumps(context.samples, default=str)),
                "rows": {split: len(ds) for split, ds in splits.items()},
                "report": report}
    write_json(os.path.join(folder, MANIFEST), manifest)
    return manifest


def read_manifest(folder: str, shown: str) -> dict:
    """The manifest of a preprocessed folder; :class:`RecipeRuntimeError` when there is none."""
    path = os.path.join(folder, MANIFEST)
    manifest = read_json(path, None) if os.path.isfile(path) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecipeRuntimeError(
            f"data.preprocessed: '{shown}' is not a folder written by 'fturun data RECIPE "
            f"--write {shown}' (no {MANIFEST} there: {path}); write it, or remove "
            "data.preprocessed to read and tokenize the sources")
    return manifest


def changes(written: dict, now: dict, prefix: str = "") -> list:
    """``[(key, then, now)]`` of the differences between two identities (dotted keys)."""
    found = []
    for key in sorted(set(written) | set(now)):
        a, b = written.get(key), now.get(key)
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(a, dict) and isinstance(b, dict):
            found.extend(changes(a, b, name))
        elif a != b:
            found.append((name, a, b))
    return found


def check_preprocessed(manifest: dict, recipe: dict, tokenizer, shown: str) -> None:
    """Refuse a folder made from other data settings or another tokenizer, naming the first
    difference and how to go on."""
    redo = (f"write it again with 'fturun data RECIPE --write {shown}', or remove "
            "data.preprocessed to tokenize the sources in this run")
    diff = changes(manifest["identity"], data_identity(recipe))
    if diff:
        key, then, now = diff[0]
        more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
        raise RecipeRuntimeError(
            f"data.preprocessed: '{shown}' was written with {key}={json.dumps(then)}, the "
            f"recipe now has {key}={json.dumps(now)}{more}: its rows are not this recipe's; "
            + redo)
    if manifest["tokenizer"] != tokenizer_digest(tokenizer):
        raise RecipeRuntimeError(
            f"data.preprocessed: '{shown}' was tokenized with another tokenizer than this "
            "run's (its vocabulary, added tokens or chat template differ: "
            "model.params.tokenizer / model.params.path / data.chat_template); " + redo)


def read_preprocessed(folder: str, shown: str, context, tokenizer) -> tuple:
    """``(splits, report, histogram)`` of a preprocessed folder (``histogram``: its
    token-length picture), checked against the run's recipe and tokenizer
    (:func:`check_preprocessed`); sets the context's label names, model kwargs and samples as
    the data pipeline would have."""
    from datasets import load_from_disk

    manifest = read_manifest(folder, shown)
    check_preprocessed(manifest, context.recipe, tokenizer, shown)
    splits = {split: load_from_disk(os.path.join(folder, split)) for split in manifest["rows"]}
    context.label_names = manifest["label_names"] or None
    context.model_kwargs = {**context.model_kwargs, **manifest["model_kwargs"]}
    if "id2label" in context.model_kwargs:  # JSON keys are strings
        context.model_kwargs["id2label"] = {int(k): v for k, v in
                                            context.model_kwargs["id2label"].items()}
    context.samples = manifest["samples"]
    context.train_dataset, context.eval_dataset = splits.get("train"), splits.get("eval")
    context.log(f"data: read from {shown} (preprocessed: " + ", ".join(
        f"{split} {len(ds):,} rows" for split, ds in splits.items()) + "), not tokenized again")
    histogram = os.path.join(folder, REPORT_FOLDER, HISTOGRAM_FILE)
    return splits, manifest["report"], histogram if os.path.isfile(histogram) else None
