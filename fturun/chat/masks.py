"""The trained tokens of a conversation, found in its one full render (no prefix renders).

For each assistant turn, in order, in the render of the whole conversation
(:func:`fturun.chat.render.render_text`):

1. where the turn's text is: after the text of the message before it, the first place the
   assistant's content appears as the template may write it: as given, stripped, or, for a
   reasoning turn whose ``<think>...</think>`` the template drops, its answer after
   ``</think>`` (as is, stripped of leading newlines, or of all surrounding whitespace);
2. where the trained text starts: right after the template's generation prompt (what
   ``add_generation_prompt`` appends, e.g. ``<|im_start|>assistant\\n``) when that appears
   between the message before and the content (so what the template writes between them,
   Qwen3's empty ``<think>`` block or gpt-oss's channel, is trained: the model writes it at
   inference), or when it runs into the content (QwQ's pre-filled ``<think>\\n`` is prompt);
   else where the content starts;
3. where it ends: after the content, the end marker the template writes right after it (an
   added token such as ``<|im_end|>``, ``<|eot_id|>``, ``</s>``; whitespace between is kept),
   and the EOS token when the template writes it right after that marker (Phi-3.5 after the
   last turn), so the model learns to stop.

A template with ``{% generation %}`` blocks is taken at its word: the trained text is each
block. Character spans become token labels through the fast tokenizer's offsets: a token is
trained when it starts inside a span. A turn whose text cannot be found (a template that
rewrites the content) is a :class:`TemplateMaskError` naming the template, the turn and the
text not found.
"""

from __future__ import annotations

from typing import NamedTuple

from ..core.errors import RecipeRuntimeError
from .render import render_text

IGNORE = -100
SHOWN_CHARS = 60


class TurnSpan(NamedTuple):
    """An assistant turn in a render: message index, trained text ``[start, end)`` and where
    its content ends (the end marker follows)."""

    turn: int
    start: int
    content_end: int
    end: int


class TemplateMaskError(RecipeRuntimeError):
    """A chat template whose render of an assistant turn cannot be found."""

    def __init__(self, template: str, turn: int, what: str, where: str = ""):
        self.template, self.turn = template, turn
        super().__init__(
            f"{where + ': ' if where else ''}data.chat_template: the chat template "
            f"{template or 'of the tokenizer'} cannot mark the assistant turns: turn {turn} "
            f"(counting messages from 0): {what}. fturun trains the assistant text as the "
            "template writes it and needs to find it in the render; use a template that "
            "writes the assistant content (as given, stripped, or after '</think>'), or mark "
            "the trained text with {% generation %} blocks, or set data.train_on='all'")


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def content_forms(content: str) -> list:
    """The ways a template may write an assistant's content, in the order they are tried."""
    forms = [content, content.strip()]
    if "</think>" in content:
        answer = content.split("</think>")[-1]
        forms += [answer, answer.lstrip("\n"), answer.strip()]
    return [f for f in dict.fromkeys(forms) if f]


def generation_prompt(tokenizer, template: str = "") -> str:
    """What ``add_generation_prompt`` appends to a render: the template's text after the
    tokens a render with and without it share (a one-user-turn probe)."""
    key = (tokenizer.get_chat_template(), tuple(sorted(tokenizer.special_tokens_map.items())))
    if key not in _PROMPTS:
        probe = [{"role": "user", "content": "hello"}]
        without, _ = render_text(probe, tokenizer, False, template)
        with_prompt, _ = render_text(probe, tokenizer, True, template)
        a = tokenizer(without, add_special_tokens=False)["input_ids"]
        b = tokenizer(with_prompt, add_special_tokens=False, return_offsets_mapping=True)
        shared = next((i for i, (x, y) in enumerate(zip(a, b["input_ids"])) if x != y),
                      min(len(a), len(b["input_ids"])))
        offsets = b["offset_mapping"]
        _PROMPTS[key] = with_prompt[offsets[shared][0]:] if shared < len(offsets) else ""
    return _PROMPTS[key]


_PROMPTS: dict = {}


def _markers(tokenizer) -> list:
    """The added tokens (end markers the template may write), longest first."""
    return sorted(tokenizer.get_added_vocab(), key=len, reverse=True)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _marker_at(text: str, position: int, markers: list) -> str | None:
    return next((m for m in markers if text.startswith(m, position)), None)


def locate_turn(text: str, messages: list, turn: int, position: int, prompt: str,
                markers: list, eos: str | None, template: str = "", where: str = "") -> TurnSpan:
    """The :class:`TurnSpan` of assistant message ``turn`` in ``text``, searched from
    ``position`` (the end of the turn before); see the module docstring."""
    before = messages[turn - 1] if turn > 0 else None
    if before is not None and before["role"] != "assistant":
        for form in dict.fromkeys([before["content"], before["content"].strip()]):
            found = text.find(form, position) if form else -1
            if found >= 0:
                position = found + len(form)
                break
    content = messages[turn]["content"]
    for form in content_forms(content):
        content_start = text.find(form, position)
        if content_start >= 0:
            content_end = content_start + len(form)
            break
    else:
        raise TemplateMaskError(template, turn, f"its content {_shown(content)} is not in the "
                                f"render after {_shown(text[max(0, position - 20):position])}",
                                where)
    start = content_start
    if prompt:  # the generation prompt before the content, or running into it
        found = text.rfind(prompt, position, min(content_end, content_start - 1 + len(prompt)))
        if found >= 0:
            start = found + len(prompt)
    end = content_end
    marker = _marker_at(text, _skip_space(text, content_end), markers)
    if marker is not None:
        end = _skip_space(text, content_end) + len(marker)
        if eos and marker != eos and text.startswith(eos, _skip_space(text, end)):
            end = _skip_space(text, end) + len(eos)
    return TurnSpan(turn, start, content_end, end)


def turn_spans(messages, tokenizer, template: str = "", where: str = "") -> tuple:
    """``(text, [TurnSpan])``: the render of the whole conversation and every assistant turn's
    trained text in it (``{% generation %}`` blocks where the template has them)."""
    messages = list(messages)
    text, blocks = render_text(messages, tokenizer, False, template, where)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if blocks:
        if len(blocks) != len(turns):
            raise TemplateMaskError(template, turns[0] if turns else 0,
                                    f"the template writes {len(blocks)} {{% generation %}} "
                                    f"blocks for {len(turns)} assistant turns", where)
        return text, [TurnSpan(t, s, e, e) for t, (s, e) in zip(turns, blocks)]
    prompt, markers = generation_prompt(tokenizer, template), _markers(tokenizer)
    spans, position = [], 0
    for turn in turns:
        span = locate_turn(text, messages, turn, position, prompt, markers,
                           tokenizer.eos_token, template, where)
        spans.append(span)
        position = span.end
    return text, spans


def token_labels(text: str, spans, tokenizer) -> tuple:
    """``(input_ids, labels)`` of ``text``: a token's label is its id when it starts inside one
    of the character ``spans`` ``[(start, end)]``, else :data:`IGNORE`."""
    if not getattr(tokenizer, "is_fast", False):
        raise RecipeRuntimeError(
            "data.format: conversation rows need a fast tokenizer (its offsets map the "
            f"trained text to tokens); {type(tokenizer).__name__} is not one: load the "
            "model's tokenizer.json (use_fast)")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                        return_token_type_ids=False)
    ids = encoded["input_ids"]
    labels = [IGNORE] * len(ids)
    for i, (begin, end) in enumerate(encoded["offset_mapping"]):
        if end > begin and any(s <= begin < e for s, e in spans):
            labels[i] = ids[i]
    return ids, labels
