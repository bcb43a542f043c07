"""Seq2seq: text -> target (summaries, translations, answers) with an encoder-decoder.

``target`` is tokenized into ``labels``; evaluation generates (``Seq2SeqTrainer`` with
``predict_with_generate`` and the recipe's ``generation`` settings), so metrics receive decoded
texts; test predictions are texts, and a few sample generations are written at the end.
"""

from __future__ import annotations

from fturun.api import write_lines

from .predictions import first_output
from .task_generation import generate, sample_prompts


def tokenize(ds, tokenizer, settings, split):
    """Inputs from ``text`` (``data.max_length``), ``labels`` from ``target``
    (``data.max_target_length``, default ``data.max_length``)."""
    return ds.map(
        _tokenize_rows,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair", "target") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                   "max_target_length": settings.max_target_length or settings.max_length,
                   "padding": settings.padding},
        desc=f"tokenize {split}",
    )


def _tokenize_rows(batch, tokenizer, max_length, max_target_length, padding):
    encoded = dict(tokenizer(batch["text"], truncation=True, max_length=max_length,
                             padding=padding, return_token_type_ids=False))
    if "target" in batch:
        labels = tokenizer(text_target=batch["target"], truncation=True,
                           max_length=max_target_length, padding=padding)["input_ids"]
        if padding:  # padding is not a target token: the loss ignores it
            pad = tokenizer.pad_token_id
            labels = [[-100 if t == pad else t for t in row] for row in labels]
        encoded["labels"] = labels
    return encoded


def decode(ids, tokenizer) -> list:
    """Texts of a batch of token ids (-100 padding included)."""
    import numpy as np

    ids = np.asarray(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.where(ids < 0, pad, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def metric_inputs(eval_pred, context):
    """The generated and the target texts, decoded."""
    predictions = first_output(eval_pred.predictions)
    return (decode(predictions, context.tokenizer),
            decode(eval_pred.label_ids, context.tokenizer))


def write_predictions(prediction, context, path: str) -> bool:
    """One JSON line per test row: the generated text (and the target when known)."""
    texts = decode(first_output(prediction.predictions), context.tokenizer)
    labels = prediction.label_ids
    truth = decode(labels, context.tokenizer) if labels is not None else [None] * len(texts)
    write_lines(path, [{"prediction": p, **({"label": t} if t is not None else {})}
                       for p, t in zip(texts, truth)])
    return True


def generate_samples(model, tokenizer, context) -> list:
    """Generations for ``generation.prompts``, else for the first eval (or train) texts, with
    their targets as references."""
    return generate(model, tokenizer, context, sample_prompts(context, whole_text=True),
                    decoder_only=False, continue_text=False)
