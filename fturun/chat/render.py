"""One render of a conversation with the context transformers gives a chat template, and the
template's own refusals turned into errors that name the row.

The template sees what ``tokenizer.apply_chat_template`` gives it: the tokenizer's special
tokens (``bos_token``, ``eos_token``, ...), ``raise_exception``, ``strftime_now``,
``add_generation_prompt``; a template with ``{% generation %}`` blocks also reports where they
are in the render (character spans), which :mod:`fturun.chat.masks` honours.

A template that raises for a conversation (Gemma refuses a system message) is a
:class:`TemplateRefusal` naming the template, the row and the template's own message, never a
Jinja traceback. ``data.fold_system`` (opt-in) folds a leading system message into the first
user turn before rendering (:func:`fold_system`), for templates without a system role.
"""

from __future__ import annotations

import re

from ..core.errors import RecipeRuntimeError

#: a ``{% generation %}`` block opening, as transformers detects it
GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


class TemplateRefusal(RecipeRuntimeError):
    """The chat template raised while rendering a conversation (its ``raise_exception`` or a
    Jinja error): the template's message, the row, and what to do."""

    def __init__(self, template: str, where: str, message: str, system: bool = False):
        self.template, self.where, self.message = template, where, message
        hint = ("; the template has no system role: set data.fold_system=true to fold the "
                "system text into the first user turn, or drop the system messages"
                if system else "; fix the row, or use a template that renders it")
        super().__init__(
            f"{where or 'a conversation'}: the chat template {template or 'of the tokenizer'} "
            f"refuses the conversation: {message}{hint}")


def template_source(tokenizer) -> str:
    """The Jinja source of the tokenizer's chat template."""
    return tokenizer.get_chat_template()


def has_generation_blocks(source: str) -> bool:
    """Whether a template marks its assistant text with ``{% generation %}`` blocks."""
    return bool(GENERATION_TAG.search(source))


def render_text(messages, tokenizer, add_generation_prompt: bool = False, template: str = "",
                where: str = "") -> tuple:
    """``(text, generation_spans)``: ``messages`` rendered once with the tokenizer's chat
    template in transformers' context, and the character spans of its ``{% generation %}``
    blocks (``[]`` without them). Keys whose value is None are dropped (a dataset's missing
    fields), as ``apply_chat_template`` does. A template that raises is a
    :class:`TemplateRefusal`."""
    import jinja2
    from transformers.utils.chat_template_utils import render_jinja_template

    source = template_source(tokenizer)
    blocks = has_generation_blocks(source)
    try:
        rendered, spans = render_jinja_template(
            conversations=[[{k: v for k, v in m.items() if v is not None} for m in messages]],
            chat_template=source,
            return_assistant_tokens_mask=blocks, add_generation_prompt=add_generation_prompt,
            **tokenizer.special_tokens_map)
    except jinja2.TemplateError as exc:
        system = any(m["role"] == "system" for m in messages)
        raise TemplateRefusal(template, where, str(exc), system) from None
    return rendered[0], [tuple(span) for span in spans[0]] if blocks else []


def fold_system(messages: list) -> list:
    """``messages`` with a leading system message folded into the first user turn (its text,
    a blank line, the user's text); unchanged without one."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0], list(messages[1:])
    for i, message in enumerate(rest):
        if message["role"] == "user":
            rest[i] = {**message, "content": f"{system['content']}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": system["content"]}, *rest]
