"""The text-regression task's callables, in the order a run calls them."""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, write_lines


def prepare(sources, recipe_data, context):
    """Labels become floats; the model gets one output (``num_labels=1``, regression)."""
    prepared = {}
    for split, ds in sources.items():
        if "labels" in ds.column_names:
            try:
                ds = ds.map(lambda batch: {"labels": [float(v) for v in batch["labels"]]},
                            batched=True, desc=f"{split} labels to floats")
            except (TypeError, ValueError) as exc:
                raise RecipeRuntimeError(f"data.{split}: text-regression needs numeric "
                                         f"labels ({exc})") from None
        prepared[split] = ds
    context.label_names = None
    context.model_kwargs = {**context.model_kwargs, "num_labels": 1,
                            "problem_type": "regression"}
    return prepared


def tokenize(ds, tokenizer, settings, split):
    """input_ids and attention_mask per row; the text column removed."""
    return ds.map(_tokenize, batched=True, remove_columns=["text"],
                  fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                             "padding": settings.padding},
                  desc=f"tokenize {split}")


def _tokenize(batch, tokenizer, max_length, padding):
    return tokenizer(batch["text"], truncation=True, max_length=max_length, padding=padding)


def metric_inputs(eval_pred, context):
    """The predicted numbers and the true ones."""
    import numpy as np

    predictions = eval_pred.predictions
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions).reshape(-1), np.asarray(eval_pred.label_ids).reshape(-1)


def write_predictions(prediction, context, path):
    """One JSON line per test row: the predicted number (and the true one when known)."""
    import numpy as np

    predicted = metric_inputs(prediction, context)[0] if prediction.label_ids is not None \
        else np.asarray(prediction.predictions).reshape(-1)
    truth = None if prediction.label_ids is None else \
        np.asarray(prediction.label_ids).reshape(-1)
    write_lines(path, [{"prediction": float(p), **({} if truth is None else
                                                   {"label": float(truth[i])})}
                       for i, p in enumerate(predicted)])
    return True
