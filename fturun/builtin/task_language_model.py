"""Language models, masked and causal: whole texts, or the token stream cut into blocks.

No labels: the collator makes them (masked tokens, or the next token). Metrics receive the token
ids at the labelled positions, so ``accuracy`` is token accuracy; perplexity comes from the eval
loss. A causal LM also writes a few sample generations (:mod:`fturun.builtin.task_generation`).
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError

from . import task_chat
from .predictions import first_output
from .task_generation import generate, sample_prompts


def tokenize(ds, tokenizer, settings, split, causal):
    """Each text (or text pair) tokenized, truncated to ``data.max_length``; or, with
    ``data.block_size``, all texts tokenized whole, concatenated and cut into blocks of
    ``block_size`` tokens (the remainder of each 1,000 rows is dropped). Causal LM: a text
    that does not end with the tokenizer's end token gets one (the model learns to stop), and
    no token_type_ids. Masked LM: a special-tokens mask, so the collator masks only words."""
    pair = "text_pair" in ds.column_names
    block = settings.block_size
    end_ids = sorted({i for i in (tokenizer.eos_token_id, tokenizer.sep_token_id)
                      if i is not None})
    ds = ds.map(
        _tokenize_rows,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": None if block else settings.max_length,
                   "padding": False if block else settings.padding, "pair": pair,
                   "causal": causal, "end_ids": end_ids},
        desc=f"tokenize {split}",
    )
    if block:
        before = len(ds)
        ds = ds.map(_group_blocks, batched=True, batch_size=1000,
                    fn_kwargs={"block_size": block}, desc=f"{split}: blocks of {block} tokens")
        if len(ds) == 0:
            raise RecipeRuntimeError(
                f"data.block_size={block}: the {before:,} {split} rows hold fewer than {block} "
                f"tokens in all, so no block is left; use a smaller data.block_size or more "
                "data")
    return ds


def tokenize_masked(ds, tokenizer, settings, split):
    """:func:`tokenize` for a masked LM."""
    return tokenize(ds, tokenizer, settings, split, causal=False)


def tokenize_causal(ds, tokenizer, settings, split):
    """:func:`tokenize` for a causal LM; conversation rows (``data.format``) with their chat
    template and completion-only labels (:mod:`fturun.builtin.task_chat`)."""
    if settings.chat_format:
        return task_chat.tokenize(ds, tokenizer, settings, split)
    return tokenize(ds, tokenizer, settings, split, causal=True)


def _tokenize_rows(batch, tokenizer, max_length, padding, pair, causal, end_ids):
    kwargs = {"truncation": max_length is not None, "max_length": max_length,
              "padding": padding, "verbose": False}
    if causal:
        kwargs["return_token_type_ids"] = False
    else:
        kwargs["return_special_tokens_mask"] = True
    encoded = dict(tokenizer(batch["text"], batch["text_pair"] if pair else None, **kwargs))
    eos = tokenizer.eos_token_id
    if causal and eos is not None and not padding:
        for i, ids in enumerate(encoded["input_ids"]):
            if ids and ids[-1] not in end_ids and (max_length is None or len(ids) < max_length):
                ids.append(eos)
                encoded["attention_mask"][i].append(1)
    return encoded


def _group_blocks(batch, block_size):
    from itertools import chain

    joined = {key: list(chain.from_iterable(values)) for key, values in batch.items()}
    total = len(joined["input_ids"]) // block_size * block_size
    return {key: [values[i:i + block_size] for i in range(0, total, block_size)]
            for key, values in joined.items()}


def metric_inputs(eval_pred, context, causal=False):
    """The predicted and the true token ids at the labelled positions (a causal LM's logits
    at position i predict the token at i + 1)."""
    import numpy as np

    predictions = np.asarray(first_output(eval_pred.predictions))
    references = np.asarray(eval_pred.label_ids)
    if causal:
        predictions, references = predictions[:, :-1], references[:, 1:]
    keep = references != -100
    return predictions[keep], references[keep]


def metric_inputs_causal(eval_pred, context):
    """:func:`metric_inputs` for a causal LM."""
    return metric_inputs(eval_pred, context, causal=True)


def generate_samples(model, tokenizer, context) -> list:
    """A causal LM's continuations of ``generation.prompts``, else of the first words of the
    first eval (or train) rows (or of their ``text``, for text pairs); for conversation rows,
    answers after the chat template's generation prompt."""
    if (context.recipe.get("data") or {}).get("format"):
        return task_chat.generate_samples(model, tokenizer, context)
    pairs = bool((context.recipe.get("data") or {}).get("columns", {}).get("text_pair"))
    return generate(model, tokenizer, context, sample_prompts(context, whole_text=False),
                    decoder_only=True, continue_text=not pairs)
