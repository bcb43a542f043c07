"""Sequence classification: one label per text (or text pair), a class id per row.

Before the split, the label names are decided (``data.labels``, a ``ClassLabel``'s names, the
ids found, or the sorted names found) and labels become ids; the model gets ``num_labels``,
``id2label`` and ``label2id``. Metrics receive arg-maxed class ids; test predictions are label
names.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, as_string_column, is_integer_feature, write_lines

from .predictions import first_output


def prepare(sources: dict, recipe_data: dict, context) -> dict:
    """Decide the label names, turn labels into ids (a ``ClassLabel`` column) and set
    ``context.label_names`` and ``context.model_kwargs``."""
    from datasets import ClassLabel

    given = recipe_data.get("labels")
    sources, names, seen, integer = _label_names(sources, given)
    if len(names) < 2:
        raise RecipeRuntimeError(f"data.train has only one label ({', '.join(names)}); "
                                 "classification needs at least two")
    missing = [n for i, n in enumerate(names) if (i if integer else n) not in seen]
    if missing:
        context.log(f"warning: labels with no train rows: {', '.join(missing)}")
    label2id = {name: i for i, name in enumerate(names)}

    encoded = {}
    for split, ds in sources.items():
        if "labels" not in ds.column_names:
            encoded[split] = ds
            continue
        if split != "train":
            _check_known_labels(ds, split, names, seen, integer, bool(given))
        if not integer:
            ds = ds.map(_labels_to_ids, batched=True, fn_kwargs={"label2id": label2id},
                        desc=f"{split} labels to ids")
        encoded[split] = ds.cast_column("labels", ClassLabel(names=names))

    context.label_names = names
    context.model_kwargs = {
        **context.model_kwargs,
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": label2id,
    }
    context.log(f"labels ({len(names)}): " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
    return encoded


def _label_names(sources: dict, given):
    """``(sources, names, seen, integer)``: the label names, the labels seen in the train data,
    and whether the labels are ids (string labels are cast to strings first)."""
    from datasets import ClassLabel

    train = sources["train"]
    feature = train.features["labels"]
    if isinstance(feature, ClassLabel):
        if given and len(given) != feature.num_classes:
            raise RecipeRuntimeError(
                f"data.labels has {len(given)} names but the train data has "
                f"{feature.num_classes} classes ({', '.join(feature.names)})")
        return sources, list(given or feature.names), set(train.unique("labels")), True
    if is_integer_feature(feature):
        seen = set(train.unique("labels"))
        if min(seen) < 0:
            raise RecipeRuntimeError(f"data.train: integer labels must be >= 0 (found "
                                     f"{min(seen)}); use label names instead")
        if not given:
            return sources, [str(i) for i in range(max(seen) + 1)], seen, True
        if max(seen) >= len(given):
            raise RecipeRuntimeError(
                f"data.train has label id {max(seen)} but data.labels names only "
                f"{len(given)} labels (ids 0..{len(given) - 1})")
        return sources, list(given), seen, True
    sources = {split: as_string_column(ds, "labels") for split, ds in sources.items()}
    seen = set(sources["train"].unique("labels"))
    if not given:
        return sources, sorted(seen), seen, False
    unknown = sorted(seen - set(given))
    if unknown:
        raise RecipeRuntimeError(
            f"data.train has labels not in data.labels: {', '.join(unknown[:10])}; "
            "add them to data.labels (or remove data.labels to use the labels found)")
    return sources, list(given), seen, False


def _check_known_labels(ds, split, names, seen, integer, given):
    values = set(ds.unique("labels"))
    if integer:
        unknown = sorted(v for v in values if v not in seen or v >= len(names))
        unknown = [str(v) for v in unknown]
    else:
        known = set(names) if given else seen
        unknown = sorted(values - known)
    if unknown:
        where = "data.labels" if given and not integer else "the train data"
        raise RecipeRuntimeError(
            f"data.{split} has labels not seen in {where}: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}; the model can only predict "
            f"{', '.join(names)}")


def _labels_to_ids(batch, label2id):
    return {"labels": [label2id[label] for label in batch["labels"]]}


def tokenize(ds, tokenizer, settings, split):
    """input_ids/attention_mask (+ token_type_ids) per row; text columns removed."""
    pair = "text_pair" in ds.column_names
    return ds.map(
        _tokenize_text,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                   "padding": settings.padding, "pair": pair},
        desc=f"tokenize {split}",
    )


def _tokenize_text(batch, tokenizer, max_length, padding, pair):
    return tokenizer(batch["text"], batch["text_pair"] if pair else None, truncation=True,
                     max_length=max_length, padding=padding)


def metric_inputs(eval_pred, context):
    """Arg-maxed class ids and the true ids."""
    import numpy as np

    return np.argmax(first_output(eval_pred.predictions), axis=-1), eval_pred.label_ids


def write_predictions(prediction, context, path: str) -> bool:
    """One JSON line per test row: the predicted label (and the true one when known)."""
    import numpy as np

    logits = prediction.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    predicted = np.argmax(logits, axis=-1).tolist()
    names = context.label_names or []
    truth = prediction.label_ids.tolist() if prediction.label_ids is not None else None
    rows = []
    for i, p in enumerate(predicted):
        row = {"prediction": names[p] if p < len(names) else p}
        if truth is not None:
            row["label"] = names[truth[i]] if 0 <= truth[i] < len(names) else truth[i]
        rows.append(row)
    write_lines(path, rows)
    return True
