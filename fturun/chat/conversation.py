"""Conversations: the one form chat rows take inside fturun, and the completion-only masks.

A conversation is a list of messages ``{"role", "content"}`` (roles :data:`ROLES`). Every
``data.format`` maps its rows into it (:mod:`fturun.data.conversations`); the chat template of
the tokenizer (:mod:`fturun.chat.templates`) renders it to text.

The trained tokens are found from the rendered template itself: for each assistant turn ``i``,
the tokens of the render of the turns before it with the generation prompt mark where the turn
starts, the tokens of the render up to and including it where it ends (its content, the
template's end-of-turn marker and what the template writes after it). Both renders must be
token prefixes of the whole conversation's tokens; a template for which they are not (one that
writes something else when a turn is not the last) is refused, naming the template: its masks
would be wrong. Texts are encoded without the tokenizer's own special tokens (the template
writes what it needs), as ``apply_chat_template`` does.

``data.train_on`` (:data:`TRAIN_ON`): ``assistant`` (every assistant turn, the default),
``last_assistant`` (the last one only), ``all`` (every token).
"""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError

#: ``data.format`` -> what its rows hold (the schema's description and the errors quote it)
CHAT_FORMATS = {
    "messages": "a list of {role, content} messages per row (OpenAI style; column "
                "data.columns.messages, default 'messages')",
    "sharegpt": "a list of {from, value} turns per row (from: human, gpt or system; column "
                "data.columns.messages, default 'conversations')",
    "alpaca": "instruction, input (optional) and output columns (data.columns.instruction, "
              ".input, .output)",
    "prompt_completion": "a prompt and a completion column (data.columns.prompt, "
                         ".completion)",
}
ROLES = ("system", "user", "assistant", "tool")
TRAIN_ON = ("assistant", "last_assistant", "all")
IGNORE = -100  # the label of a token the loss ignores


def render(messages, tokenizer, add_generation_prompt: bool = False) -> str:
    """``messages`` rendered with the tokenizer's chat template."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def encode_rendered(text: str, tokenizer) -> list:
    """The token ids of rendered text (no special tokens of the tokenizer's own: the template
    writes them)."""
    return tokenizer(text, add_special_tokens=False, return_token_type_ids=False)["input_ids"]


def trained_turns(messages, train_on: str) -> list:
    """Indices of the assistant turns ``train_on`` trains (none for ``all``: every token)."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if train_on == "last_assistant":
        return turns[-1:]
    return turns if train_on == "assistant" else []


def assistant_spans(messages, tokenizer, turns, ids, template: str = "") -> list:
    """``[(start, end)]`` token spans of the assistant ``turns`` in ``ids`` (the tokens of
    the whole conversation). :class:`TemplatePrefixError` when a prefix render is not a token
    prefix of ``ids``."""
    spans = []
    for turn in turns:
        start = encode_rendered(render(messages[:turn], tokenizer, add_generation_prompt=True),
                       tokenizer)
        end = encode_rendered(render(messages[:turn + 1], tokenizer), tokenizer)
        for prefix in (start, end):
            if ids[:len(prefix)] != prefix:
                raise TemplatePrefixError(template, turn)
        spans.append((len(start), len(end)))
    return spans


def conversation_tokens(messages, tokenizer, train_on: str = "assistant",
                        max_length: int | None = None, template: str = "") -> tuple:
    """``(input_ids, labels)`` of one conversation: labels are the token ids on the trained
    tokens and :data:`IGNORE` elsewhere; both cut to ``max_length``."""
    ids = encode_rendered(render(messages, tokenizer), tokenizer)
    if train_on == "all":
        labels = list(ids)
    else:
        labels = [IGNORE] * len(ids)
        for start, end in assistant_spans(messages, tokenizer,
                                          trained_turns(messages, train_on), ids, template):
            labels[start:end] = ids[start:end]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


class TemplatePrefixError(RecipeRuntimeError):
    """A chat template whose render of the first turns is not a token prefix of the render of
    the whole conversation: the assistant turns cannot be marked."""

    def __init__(self, template: str, turn: int):
        self.template, self.turn = template, turn
        super().__init__(
            f"data.chat_template: the chat template {template or 'of the tokenizer'} cannot "
            f"mark the assistant turns: rendering the conversation up to turn {turn} does not "
            "give the first tokens of the whole conversation (the template writes something "
            "else when a turn is not the last); use a template whose render of the first turns "
            "starts the render of the whole conversation (e.g. 'chatml'), or "
            "data.train_on='all'")


#: the conversation the template is tried on before any row is tokenized
PROBE = ({"role": "user", "content": "hello there"},
         {"role": "assistant", "content": "hi how are you"},
         {"role": "user", "content": "fine thanks"},
         {"role": "assistant", "content": "good to hear"})


def check_template(tokenizer, template: str = "") -> None:
    """Refuse (:class:`RecipeRuntimeError`, naming ``template``) a chat template that cannot
    render a plain two-turn conversation, or whose prefix renders are not token prefixes of the
    whole render (:func:`assistant_spans`)."""
    try:
        ids = encode_rendered(render(PROBE, tokenizer), tokenizer)
        assistant_spans(PROBE, tokenizer, [1, 3], ids, template)
    except TemplatePrefixError:
        raise
    except Exception as exc:  # jinja2's errors, raise_exception() of the template
        raise RecipeRuntimeError(
            f"data.chat_template: the chat template {template} cannot render a conversation "
            f"of user and assistant turns ({type(exc).__name__}: {exc}); fix the template or "
            "name another one") from None


def prompt_and_answer(messages, tokenizer) -> tuple:
    """``(prompt_text, answer_text)`` of one conversation row for generating its answer: the
    turns before its last assistant turn rendered with the tokenizer's chat template and the
    generation prompt (the text to encode with :func:`encode_rendered` and continue), and the
    content of that last assistant turn (the reference). Without an assistant turn: every
    turn as the prompt and ``""`` as the answer."""
    messages = list(messages)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    last = turns[-1] if turns else len(messages)
    answer = messages[last]["content"] if turns else ""
    return render(messages[:last], tokenizer, add_generation_prompt=True), answer


def end_of_turn_ids(tokenizer) -> list:
    """The special tokens the template writes at the end of an assistant turn (ChatML:
    ``<|im_end|>``), plus the tokenizer's end token: where generation of a turn stops."""
    ids = encode_rendered(render(PROBE[:2], tokenizer), tokenizer)
    (start, end), = assistant_spans(PROBE[:2], tokenizer, [1], ids)
    special = set(tokenizer.all_special_ids)
    found = [i for i in ids[start:end] if i in special]
    if tokenizer.eos_token_id is not None:
        found.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(found))
