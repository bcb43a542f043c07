"""A causal LM's generation-based evaluation: the answers it generates to the prompts of a few
eval rows (``generation.eval_rows``), which the runner scores at each evaluation with the
task's ``generation_metrics`` (ROUGE, BLEU, exact match) and logs as ``eval_*`` metrics.

:func:`prompt_and_answer_of` is the one place where a row becomes a prompt and its answer:

- prompt/answer rows (``data.columns.text`` -> the prompt, ``data.columns.text_pair`` -> the
  answer): the prompt encoded as the model was trained on it (the tokenizer's encoding of the
  first text, its end token kept, so the model goes on with the second text);
- conversation rows (``data.format``): the turns before the last assistant turn rendered with
  the chat template and its generation prompt, and that turn's content as the answer
  (:func:`fturun.api.prompt_and_answer`); generation stops at the template's end of turn;
- plain text rows have no answer: no generation-based evaluation.
"""

from __future__ import annotations

from fturun.api import encode_rendered, end_of_turn_ids, prompt_and_answer

from .task_generation import generate


def prompt_and_answer_of(row: dict, tokenizer, chat: bool) -> tuple | None:
    """``(prompt, answer)`` of one raw eval row (see the module docstring); None for a row
    without an answer (plain text, a conversation without an assistant turn)."""
    if chat:
        prompt, answer = prompt_and_answer(row["messages"], tokenizer)
        return (prompt, answer) if answer else None
    if row.get("text_pair"):
        return row["text"], row["text_pair"]
    return None


def answer_prompts(model, tokenizer, context, rows) -> list:
    """``[{"prompt", "generated", "reference"}]``: the answers ``model`` generates to the
    prompts of ``rows`` (raw eval rows), with the recipe's ``generation`` settings."""
    chat = bool((context.recipe.get("data") or {}).get("format"))
    pairs = [pair for pair in (prompt_and_answer_of(row, tokenizer, chat) for row in rows)
             if pair is not None]
    if not pairs:
        return []
    if chat:
        return generate(model, tokenizer, context, pairs, decoder_only=True,
                        continue_text=False,
                        encode=lambda prompt: encode_rendered(prompt, tokenizer),
                        stop_ids=end_of_turn_ids(tokenizer))
    return generate(model, tokenizer, context, pairs, decoder_only=True, continue_text=False)


#: what the answers are scored with: short answers need BLEU's smoothing to score above 0
GENERATION_METRICS = ("rouge", {"name": "bleu", "params": {"smooth": True}}, "exact_match")
