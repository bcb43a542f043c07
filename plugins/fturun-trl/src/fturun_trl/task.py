"""The ``preference`` task's callables: tokenizing pairs, its collator, its metrics.

A pair is tokenized the way a causal LM's ``(prompt, answer)`` text pair is for supervised
fine-tuning (``data.columns`` text + text_pair): the prompt with the tokenizer's special
tokens, then each answer without them, ended by the end token (the tokenizer's eos, else its
sep), so a model fine-tuned on pairs starts preference tuning from the form it knows. The rows
hold ``prompt_ids``, ``chosen_ids`` and ``rejected_ids``, what TRL's DPO trainer and collator
read; each prompt+answer is cut to ``data.max_length`` tokens.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, conversation_tokens

IGNORE = -100  # the label of a token outside the loss

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
    """Pairs -> ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (see the module); pairs in
    chat form through :func:`tokenize_chat_pairs`."""
    if is_chat(ds):
        return tokenize_chat_pairs(ds, tokenizer, settings, split)
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


def is_chat(ds) -> bool:
    """``chosen`` holds conversations (lists of ``{role, content}``), not text."""
    feature = ds.features.get("chosen")
    return not hasattr(feature, "dtype")


def tokenize_chat_pairs(ds, tokenizer, settings, split):
    """Pairs in chat form (TRL's conversational form): ``prompt`` the turns before the answer
    (a list of ``{role, content}``, or a text: one user turn), ``chosen`` and ``rejected`` the
    answer turns. Each prompt + answer is rendered with the tokenizer's chat template; the
    prompt's tokens (with the template's generation prompt) become ``prompt_ids``, the answer's
    (to its end-of-turn) ``chosen_ids`` / ``rejected_ids``: the prompt is outside the loss."""
    if not getattr(tokenizer, "chat_template", None):
        raise RecipeRuntimeError(
            f"data.{split}: the pairs are conversations, and the tokenizer has no chat template "
            "to render them; use a model whose tokenizer has one (a chat-SFT run, data.format "
            "with data.chat_template, saves it)")
    return ds.map(_chat_pair, with_indices=True, remove_columns=["prompt", "chosen", "rejected"],
                  fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                             "split": split},
                  desc=f"tokenize {split} chat pairs")


def _answer_tokens(prompt, answer, tokenizer, max_length, where):
    """``(prompt ids, answer ids)`` of one prompt + answer conversation."""
    ids, labels = conversation_tokens(list(prompt) + list(answer), tokenizer,
                                      train_on="last_assistant", max_length=max_length)
    trained = [i for i, label in enumerate(labels) if label != IGNORE]
    if not trained:
        raise RecipeRuntimeError(f"{where}: no answer token is left within data.max_length="
                                 f"{max_length} (or the answer has no assistant turn); raise "
                                 "data.max_length or shorten the prompt")
    return ids[:trained[0]], ids[trained[0]:trained[-1] + 1]


def _chat_pair(row, index, tokenizer, max_length, split):
    prompt = row["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    where = f"data.{split} row {index}"
    prompt_ids, chosen = _answer_tokens(prompt, row["chosen"], tokenizer, max_length, where)
    other_prompt, rejected = _answer_tokens(prompt, row["rejected"], tokenizer, max_length,
                                            where)
    if other_prompt != prompt_ids:
        raise RecipeRuntimeError(f"{where}: the prompt renders differently before the chosen "
                                 "and the rejected answer; give both the same prompt turns")
    return {"prompt_ids": prompt_ids, "chosen_ids": chosen, "rejected_ids": rejected}
