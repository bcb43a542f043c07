"""Conversations: the one form chat rows take inside fturun, and the completion-only masks.

A conversation is a list of messages ``{"role", "content"}`` (roles :data:`ROLES`). Every
``data.format`` maps its rows into it (:mod:`fturun.data.conversations`); the chat template of
the tokenizer (:mod:`fturun.chat.templates`) renders it to text.

The trained tokens are found in the one render of the whole conversation
(:mod:`fturun.chat.masks`): each assistant turn's text as the template writes it, plus the end
marker it writes after it; a template whose assistant text cannot be found is refused, naming
the template and the turn. Renders get transformers' context and a template's own refusal is
an error naming the row (:mod:`fturun.chat.render`). Before training, the generation prompt
is compared with the training render (:mod:`fturun.chat.parity`). Texts are encoded without
the tokenizer's own special tokens (the template writes what it needs), as
``apply_chat_template`` does.

``data.train_on`` (:data:`TRAIN_ON`): ``assistant`` (every assistant turn, the default),
``last_assistant`` (the last one only), ``all`` (every token).
"""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError
from .masks import IGNORE, token_labels, turn_spans  # noqa: F401 (IGNORE: re-exported)
from .render import TemplateRefusal, render_text

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


def conversation_tokens(messages, tokenizer, train_on: str = "assistant",
                        max_length: int | None = None, template: str = "",
                        where: str = "") -> tuple:
    """``(input_ids, labels)`` of one conversation: labels are the token ids on the trained
    tokens (:mod:`fturun.chat.masks`) and :data:`IGNORE` elsewhere; both cut to
    ``max_length``. ``where`` (e.g. ``data.train row 3``) locates the template's errors."""
    if train_on == "all":
        text, _ = render_text(messages, tokenizer, False, template, where)
        ids, _ = token_labels(text, [], tokenizer)
        labels = list(ids)
    else:
        text, spans = turn_spans(messages, tokenizer, template, where)
        trained = set(trained_turns(messages, train_on))
        ids, labels = token_labels(text, [(s.start, s.end) for s in spans
                                          if s.turn in trained], tokenizer)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


#: the conversation the template is tried on before any row is tokenized
PROBE = ({"role": "user", "content": "hello there"},
         {"role": "assistant", "content": "hi how are you"},
         {"role": "user", "content": "fine thanks"},
         {"role": "assistant", "content": "good to hear"})


def check_template(tokenizer, template: str = "", train_on: str = "assistant") -> None:
    """Refuse (:class:`RecipeRuntimeError`, naming ``template``) a chat template that cannot
    render a plain two-turn conversation, or (unless ``train_on`` is ``all``) whose assistant
    turns cannot be found in its render (:class:`fturun.chat.masks.TemplateMaskError`)."""
    try:
        if train_on == "all":
            render_text(PROBE, tokenizer, False, template)
        else:
            turn_spans(PROBE, tokenizer, template)
    except TemplateRefusal as exc:
        raise RecipeRuntimeError(
            f"data.chat_template: the chat template {template} cannot render a conversation "
            f"of user and assistant turns ({exc.message}); fix the template or name another "
            "one") from None


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
    ``<|im_end|>``; gpt-oss: ``<|end|>`` and, after the last turn, ``<|return|>``), plus the
    tokenizer's end token: where generation of a turn stops."""
    found = []
    try:
        text, spans = turn_spans(PROBE, tokenizer)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
        for span in spans:
            found += [i for i, (begin, end) in zip(encoded["input_ids"],
                                                    encoded["offset_mapping"])
                      if span.content_end <= begin < span.end and end > begin and i in added]
    except RecipeRuntimeError:  # a template fturun cannot mark: the end token only
        pass
    if tokenizer.eos_token_id is not None:
        found.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(found))
