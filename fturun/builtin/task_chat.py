"""Causal LM on conversation rows (``data.format``): each row's ``messages`` rendered with the
run's chat template, labels only on the trained turns (``data.train_on``; completion-only loss
by default), and sample generations that answer a prompt with the template's generation prompt.

The masks come from :func:`fturun.api.conversation_tokens` (the one render of each row); the
rows whose trained tokens ``data.max_length`` cut off are dropped by the data pipeline
afterwards, with a warning. The collators keep the labels: padded with -100
(``language_modeling`` with ``mlm=false``), or packed with positions restarting per example
(``packing``).
"""

from __future__ import annotations

from fturun.api import conversation_tokens, encode_rendered, end_of_turn_ids, prompt_and_answer

from .task_generation import generate


def tokenize(ds, tokenizer, settings, split):
    """``input_ids``, ``attention_mask`` and ``labels`` of each conversation (see the module
    docstring). The template's sha256 is an argument of the transform, so a changed template
    is a changed cache key."""
    return ds.map(
        _tokenize_rows,
        batched=True,
        with_indices=True,
        remove_columns=list(ds.column_names),
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length, "split": split,
                   "train_on": settings.train_on, "template": settings.chat_template or "",
                   "template_sha256": settings.chat_template_sha256},
        desc=f"tokenize {split} conversations",
    )


def _tokenize_rows(batch, indices, tokenizer, max_length, split, train_on, template,
                   template_sha256):
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for messages, index in zip(batch["messages"], indices):
        ids, labels = conversation_tokens(messages, tokenizer, train_on, max_length, template,
                                          where=f"data.{split} row {index}")
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels)
    return out


def chat_prompts(context, tokenizer) -> list:
    """``[(shown prompt, rendered prompt, reference)]`` of the sample generations:
    ``generation.prompts`` as user turns, else the first eval (or train) conversations up to
    their last assistant turn (:func:`fturun.api.prompt_and_answer`)."""
    from fturun.api import DEFAULT_NUM_SAMPLES

    section = context.recipe.get("generation") or {}
    count = section.get("num_samples", DEFAULT_NUM_SAMPLES)
    if count == 0:
        return []
    if section.get("prompts"):
        rows = [[{"role": "user", "content": p}, {"role": "assistant", "content": ""}]
                for p in section["prompts"]]
    else:
        samples = context.samples or {}
        rows = [row["messages"] for row in (samples.get("eval") or samples.get("train") or [])]
    prompts = []
    for messages in rows[:count]:
        rendered, answer = prompt_and_answer(messages, tokenizer)
        shown = next((m["content"] for m in reversed(messages[:-1]) if m["role"] == "user"),
                     rendered)
        prompts.append((shown, rendered, answer or None))
    return prompts


def generate_samples(model, tokenizer, context) -> list:
    """Answers to the sample prompts, generated after the template's generation prompt and
    stopped at its end-of-turn marker."""
    prompts = chat_prompts(context, tokenizer)
    if not prompts:
        return []
    rendered = {shown: text for shown, text, _ in prompts}
    return generate(model, tokenizer, context, [(shown, ref) for shown, _, ref in prompts],
                    decoder_only=True, continue_text=False,
                    encode=lambda prompt: encode_rendered(rendered[prompt], tokenizer),
                    stop_ids=end_of_turn_ids(tokenizer))
