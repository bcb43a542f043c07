"""Train/inference parity: what generation shows the model should be what training showed it.

Generation (samples, generation eval, the MLflow text-generation model) prompts with the turns
before an assistant turn rendered with ``add_generation_prompt``. That prompt should be the
training render of the same conversation up to where the turn's trained text starts (a
pre-filled part such as QwQ's ``<think>\\n`` is prompt there too). Checked once before training
on the first real rows; where it does not hold (data without reasoning for a template that
pre-fills a think block; Mistral's system text moved to the last user turn), one warning
shows where the two renders part, so the user knows what the model will see at inference that
it never saw in training.
"""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError
from .conversation import render, trained_turns
from .masks import turn_spans

CHECKED_ROWS = 3
CONTEXT_CHARS = 40


def parity_difference(messages, tokenizer, train_on: str = "assistant",
                      template: str = "") -> str | None:
    """Where the generation prompt of a trained turn of ``messages`` differs from the training
    render up to that turn's trained text, in words; None when every one matches."""
    messages = list(messages)
    text, spans = turn_spans(messages, tokenizer, template)
    trained = set(trained_turns(messages, train_on) or trained_turns(messages, "assistant"))
    for span in spans:
        if span.turn not in trained:
            continue
        prompt = render(messages[:span.turn], tokenizer, add_generation_prompt=True)
        training = text[:span.start]
        if prompt == training:
            continue
        at = next((i for i, (a, b) in enumerate(zip(prompt, training)) if a != b),
                  min(len(prompt), len(training)))
        begin = max(0, at - CONTEXT_CHARS)
        return (f"turn {span.turn}: from character {at}, the generation prompt has "
                f"{prompt[begin:at + CONTEXT_CHARS]!r} where the training render has "
                f"{training[begin:at + CONTEXT_CHARS]!r} (trained text starts at "
                f"{span.start})")
    return None


def check_parity(rows, tokenizer, train_on: str, template: str, log) -> str | None:
    """Compare the generation prompt with the training render on the first
    :data:`CHECKED_ROWS` conversations of ``rows`` (see the module docstring); log one warning
    through ``log`` at the first difference and return it (None when they match)."""
    for index, row in enumerate(rows):
        if index >= CHECKED_ROWS:
            break
        try:
            difference = parity_difference(row["messages"], tokenizer, train_on, template)
        except RecipeRuntimeError:
            return None  # tokenizing the rows reports it, located (train_on 'all': no masks)
        if difference:
            warning = (f"warning: chat template {template or 'of the tokenizer'}: train/"
                       f"inference parity: on data.train row {index}, {difference}. The "
                       "model will be prompted at inference with text it never saw before "
                       "its answers in training (e.g. a pre-filled <think> the data lacks, "
                       "or text the template moves); check the template and the data")
            log(warning)
            return warning
    return None
