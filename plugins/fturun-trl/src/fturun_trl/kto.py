"""The ``kto`` task's callables (nothing heavy at import): KTO on unpaired rows, each a
``prompt``, a ``completion`` and a ``label`` (true: a desirable completion, false: an
undesirable one; kept from the source as it is, ``data.columns`` maps the two texts).

A row is tokenized as the preference task tokenizes a pair: the prompt with the tokenizer's
special tokens, then the completion ended by the end token, cut to ``data.max_length``; the
rows hold ``prompt_ids``, ``completion_ids`` and ``label``, what TRL's KTO trainer and collator
read.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError

from .task import _tokenize_pairs, end_token_id

#: what TRL's KTOTrainer logs at each log and evaluation (``eval_`` + these)
TRAINER_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
                   "logps/rejected", "kl")


def prepare(sources: dict, recipe_data: dict, context) -> dict:
    """Every source has a true/false ``label`` column."""
    for split, ds in sources.items():
        if "label" not in ds.column_names:
            raise RecipeRuntimeError(
                f"data.{split}: task 'kto' reads a 'label' column (true: a desirable "
                f"completion, false: an undesirable one); the columns are: "
                f"{', '.join(ds.column_names)}")
        bad = [i for i, v in enumerate(ds["label"]) if not isinstance(v, bool)][:3]
        if bad:
            raise RecipeRuntimeError(
                f"data.{split}: column 'label' must hold true or false; row "
                f"{bad[0]} holds {ds[bad[0]]['label']!r} (rows counted from 0)")
    return sources


def tokenize(ds, tokenizer, settings, split):
    """Rows -> ``prompt_ids``, ``completion_ids``, ``label``."""
    return ds.map(_tokenize_rows, batched=True,
                  remove_columns=[c for c in ds.column_names if c != "label"],
                  fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                             "end": end_token_id(tokenizer)},
                  desc=f"tokenize {split} rows")


def _tokenize_rows(batch, tokenizer, max_length, end):
    pairs = {"prompt": batch["prompt"], "chosen": batch["completion"],
             "rejected": [""] * len(batch["prompt"])}
    parts = _tokenize_pairs(pairs, tokenizer, max_length, end)
    return {"prompt_ids": parts["prompt_ids"], "completion_ids": parts["chosen_ids"]}


def unpaired_collator(params, context):
    """TRL's ``DataCollatorForUnpairedPreference``: prompt+completion rows (and their KL
    rows) padded, with a completion mask and the labels."""
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    tokenizer = context.tokenizer
    pad = tokenizer.pad_token_id
    return DataCollatorForUnpairedPreference(
        pad_token_id=end_token_id(tokenizer) if pad is None else pad)


def metric_inputs(eval_pred, context):
    """The kto task's metrics are the ones its Trainer logs."""
    raise RecipeRuntimeError("task 'kto' logs its own metrics (eval_rewards/margins, "
                             "eval_kl, ...): remove 'metrics' from the recipe")
