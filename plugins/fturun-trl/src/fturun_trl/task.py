"""The ``preference`` task's callables: tokenizing pairs, its collator, its metrics.

A pair is tokenized the way a causal LM's ``(prompt, answer)`` text pair is for supervised
fine-tuning (``data.columns`` text + text_pair): the prompt with the tokenizer's special
tokens, then each answer without them, ended by the end token (the tokenizer's eos, else its
sep), so a model fine-tuned on pairs starts preference tuning from the form it knows. The rows
hold ``prompt_ids``, ``chosen_ids`` and ``rejected_ids``, what TRL's DPO trainer and collator
read; each prompt+answer is cut to ``data.max_length`` tokens.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError

#: what TRL's DPOTrainer logs at each evaluation (``eval_`` + these) and training log
TRAINER_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies",
                   "rewards/margins", "logps/chosen", "logps/rejected")


def end_token_id(tokenizer) -> int:
    """The id that ends an answer: eos, else sep."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return token_id
    raise RecipeRuntimeError("task 'preference': the tokenizer has neither an eos nor a sep "
                             "token to end the answers with; use a tokenizer that has one")


def tokenize(ds, tokenizer, settings, split):
    """Pairs -> ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (see the module)."""
    return ds.map(_tokenize_pairs, batched=True,
                  remove_columns=["prompt", "chosen", "rejected"],
                  fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                             "end": end_token_id(tokenizer)},
                  desc=f"tokenize {split} pairs")


def _tokenize_pairs(batch, tokenizer, max_length, end):
    prompts = tokenizer(batch["prompt"], truncation=True, max_length=max_length - 1,
                        return_token_type_ids=False, verbose=False)["input_ids"]
    out = {"prompt_ids": prompts, "chosen_ids": [], "rejected_ids": []}
    for column in ("chosen", "rejected"):
        answers = tokenizer(batch[column], add_special_tokens=False,
                            return_token_type_ids=False, verbose=False)["input_ids"]
        for prompt, answer in zip(prompts, answers):
            room = max_length - len(prompt) - 1  # >= 0: the prompt took at most max_length - 1
            out[f"{column}_ids"].append(answer[:room] + [end])
    return out


def preference_collator(params, context):
    """TRL's ``DataCollatorForPreference``: the chosen rows, then the rejected ones, padded with
    the tokenizer's pad token (else its end token), and a completion mask."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    tokenizer = context.tokenizer
    pad = tokenizer.pad_token_id
    return DataCollatorForPreference(pad_token_id=end_token_id(tokenizer) if pad is None else pad)


def metric_inputs(eval_pred, context):
    """The preference task's metrics are the ones its Trainer logs (``rewards/margins``,
    ``rewards/accuracies``, ...): metric components get nothing to score."""
    raise RecipeRuntimeError(
        "task 'preference' computes its own eval metrics (eval_rewards/margins, "
        "eval_rewards/accuracies, ...): remove 'metrics' from the recipe")
