"""Token classification: one tag per word (NER, POS), aligned to the word pieces.

Before the split, a text column is split into words, each row's tags are checked to be one per
word, and the tag names are decided (``data.labels`` or the sorted tags found); tags become ids.
Tokenizing puts each word's tag on its first piece (or, with ``data.label_all_tokens``, on every
piece). Metrics receive tag names per sentence; test predictions are tag lists.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, is_integer_feature, is_list_column, write_lines

from .predictions import first_output


def prepare(sources: dict, recipe_data: dict, context) -> dict:
    """Words as lists (a text column is split on whitespace), labels checked to be lists with
    one label per word, the tag map (``data.labels`` or the sorted tags found in the train
    data), tags -> ids; sets ``context.label_names`` and ``context.model_kwargs``."""
    columns = recipe_data.get("columns") or {}
    where = (f"data.columns.text '{columns.get('text', 'text')}', data.columns.label "
             f"'{columns.get('label', 'label')}'")
    sources = {split: _as_words(ds, split) for split, ds in sources.items()}
    for split, ds in sources.items():
        if "labels" in ds.column_names:
            _check_labels_aligned(ds, split, where)
    given = recipe_data.get("labels")
    names, integer = _tag_names(sources["train"], given)
    label2id = {name: i for i, name in enumerate(names)}
    encoded = {}
    for split, ds in sources.items():
        if "labels" in ds.column_names and not integer:
            found = {str(tag) for tags in ds["labels"] for tag in tags}
            unknown = sorted(found - set(names))
            if unknown:
                known = "data.labels" if given else "the train data"
                raise RecipeRuntimeError(
                    f"data.{split} has tags not in {known}: {', '.join(unknown[:10])}; the "
                    f"model can only predict {', '.join(names)}")
            ds = ds.map(_tags_to_ids, batched=True, fn_kwargs={"label2id": label2id},
                        desc=f"{split} tags to ids")
        encoded[split] = ds
    context.label_names = names
    context.model_kwargs = {**context.model_kwargs, "num_labels": len(names),
                            "id2label": dict(enumerate(names)), "label2id": label2id}
    context.log(f"tags ({len(names)}): " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
    return encoded


def _tag_names(train, given) -> tuple:
    """``(names, integer)``: the tag names and whether the train tags are ids."""
    inner = train.features["labels"].feature
    if getattr(inner, "names", None):  # ClassLabel tags
        names, integer = list(given or inner.names), True
    elif is_integer_feature(inner):
        seen = {tag for tags in train["labels"] for tag in tags}
        integer = True
        if min(seen, default=0) < 0:
            raise RecipeRuntimeError(f"data.train: integer tags must be >= 0 (found "
                                     f"{min(seen)}); use tag names instead")
        names = list(given) if given else [str(i) for i in range(max(seen, default=0) + 1)]
        if max(seen, default=0) >= len(names):
            raise RecipeRuntimeError(
                f"data.train has tag id {max(seen)} but data.labels names only {len(names)} "
                f"tags (ids 0..{len(names) - 1})")
    else:
        integer = False
        seen = {str(tag) for tags in train["labels"] for tag in tags}
        names = list(given) if given else sorted(seen)
    if len(names) < 2:
        raise RecipeRuntimeError(f"data.train has only one tag ({', '.join(names)}); token "
                                 "classification needs at least two (e.g. O and B-PER)")
    return names, integer


def _as_words(ds, split):
    if is_list_column(ds, "text"):
        return ds
    return ds.map(_split_words, batched=True, desc=f"split {split} text into words")


def _split_words(batch):
    return {"text": [str(text).split() for text in batch["text"]]}


def _check_labels_aligned(ds, split, where):
    """Each row's labels: a list with one entry per word."""
    if not is_list_column(ds, "labels"):
        example = next((v for v in ds["labels"][:20] if v is not None), None)
        raise RecipeRuntimeError(
            f"data.{split}: token-classification labels must be lists with one label per "
            f"word, but the label column holds {type(example).__name__} values (e.g. "
            f"{str(example)[:40]!r}); {where}")
    row = 0
    for batch in ds.iter(batch_size=1000):
        for words, tags in zip(batch["text"], batch["labels"]):
            if tags is None or len(tags) != len(words):
                count = "no" if tags is None else len(tags)
                raise RecipeRuntimeError(
                    f"data.{split} row {row}: {len(words)} words but {count} labels; "
                    f"token-classification needs one label per word ({where}); words: "
                    f"{' '.join(map(str, words))[:80]!r}")
            row += 1


def _tags_to_ids(batch, label2id):
    return {"labels": [[label2id[str(tag)] for tag in tags] for tags in batch["labels"]]}


def tokenize(ds, tokenizer, settings, split):
    """Word pieces of the words; each word's label on its first piece, -100 (ignored) on the
    others, or, with ``data.label_all_tokens`` (train split only, so that evaluation still
    counts each word once), the word's label on every piece (``B-X`` continued as ``I-X``)."""
    if not getattr(tokenizer, "is_fast", False):
        raise RecipeRuntimeError(
            f"token-classification needs a fast tokenizer (it maps word pieces back to words); "
            f"{type(tokenizer).__name__} is not one: use a model with a tokenizer.json")
    names = list(settings.label_names)
    continuation = {}
    for i, name in enumerate(names):
        if name.startswith("B-") and "I-" + name[2:] in names:
            continuation[i] = names.index("I-" + name[2:])
    return ds.map(
        _tokenize_and_align,
        batched=True,
        remove_columns=[c for c in ("text", "labels") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                   "padding": settings.padding,
                   "label_all": settings.label_all_tokens and split == "train",
                   "continuation": continuation},
        desc=f"tokenize {split}",
    )


def _tokenize_and_align(batch, tokenizer, max_length, padding, label_all, continuation):
    encoded = tokenizer(batch["text"], is_split_into_words=True, truncation=True,
                        max_length=max_length, padding=padding)
    out = dict(encoded)
    if "labels" in batch:
        out["labels"] = [align_labels(encoded.word_ids(i), tags, label_all, continuation)
                         for i, tags in enumerate(batch["labels"])]
    return out


def align_labels(word_ids, tags, label_all=False, continuation=None) -> list:
    """Labels per word piece from labels per word. ``word_ids``: the word of each piece (None
    for special tokens and padding). The first piece of a word gets the word's tag; later
    pieces get -100, or with ``label_all`` the tag again (``continuation`` maps a ``B-X`` id to
    its ``I-X`` id)."""
    continuation = continuation or {}
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(-100)
        elif word != previous:
            labels.append(tags[word])
        else:
            labels.append(continuation.get(tags[word], tags[word]) if label_all else -100)
        previous = word
    return labels


def _tag_rows(predictions, labels, names) -> list:
    """``[(predicted tag names, true tag names)]`` per sentence, at the labelled pieces."""
    import numpy as np

    predictions = np.asarray(predictions)
    if predictions.ndim == 3:  # logits, when nothing arg-maxed them
        predictions = np.argmax(predictions, axis=-1)
    rows = []
    for row_predictions, row_labels in zip(predictions, labels):
        row_labels = np.asarray(row_labels)
        keep = row_labels != -100
        rows.append(([names[i] for i in row_predictions[keep]],
                     [names[i] for i in row_labels[keep]]))
    return rows


def _predicted_and_true(output, context) -> list:
    """``[(predicted tags, true tags)]`` a sentence, of an EvalPrediction or PredictionOutput."""
    return _tag_rows(first_output(output.predictions), output.label_ids,
                     list(context.label_names or []))


def metric_inputs(eval_pred, context):
    """Tag names per sentence: ``(predicted, true)``, lists of lists."""
    rows = _predicted_and_true(eval_pred, context)
    return [p for p, _ in rows], [t for _, t in rows]


def write_predictions(prediction, context, path: str) -> bool:
    """One JSON line per test sentence: the predicted and the true tags."""
    rows = _predicted_and_true(prediction, context)
    write_lines(path, [{"prediction": p, "label": t} for p, t in rows])
    return True
