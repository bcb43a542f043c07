"""Chat templates: which one a run uses, checked before anything heavy loads, and set on its
tokenizer.

``data.chat_template`` names a built-in template (:data:`BUILTIN_TEMPLATES`: ``chatml``) or a
Jinja file (a path relative to the recipe, ending ``.jinja``); without it the tokenizer's own
template is used, and a tokenizer without one is an error that says what to set. The template's
special tokens (``<|...|>`` markers, such as ChatML's ``<|im_start|>`` and ``<|im_end|>``) that
the tokenizer lacks are added to it as special tokens; the model's embeddings are then resized
(:func:`fit_embeddings`). A tokenizer without an end token gets the template's end-of-turn
marker as one, so generation stops at the end of a turn. The template's sha256 is part of the
tokenization cache key and an MLflow tag; it is saved with the tokenizer in ``model/``.

Only jinja2 here (``fturun validate`` parses a template file): no torch, no transformers.
"""

from __future__ import annotations

import hashlib
import os
import re

from ..core.errors import RecipeRuntimeError
from ..recipe.paths import resolve_path
from ..recipe.refs import component_ref

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: built-in template name -> its Jinja source
BUILTIN_TEMPLATES = {"chatml": CHATML}

#: the special-token markers a template writes (``<|im_start|>``, ``<|eot_id|>``, ...)
MARKER = re.compile(r"<\|[^|<>\s]+\|>")

#: the attribute of a tokenizer prepared for a run: ``(sha256, origin)`` of its template
PREPARED = "_fturun_chat_template"


def template_problem(value: str, recipe_dir: str) -> str | None:
    """What is wrong with ``data.chat_template`` = ``value`` (a built-in name or a ``.jinja``
    file relative to ``recipe_dir``), or None when it names a template that parses."""
    try:
        read_template(value, recipe_dir)
    except RecipeRuntimeError as exc:
        return str(exc).removeprefix("data.chat_template: ")
    return None


def read_template(value: str, recipe_dir: str) -> tuple:
    """``(source, origin)`` of the template ``data.chat_template`` names; origin says where it
    is from (``"'chatml' (built-in)"``, ``"file 'x.jinja'"``). A template that does not exist
    or does not parse is a :class:`RecipeRuntimeError` saying so and how to fix it."""
    if value in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[value], f"'{value}' (built-in)"
    if not value.endswith(".jinja"):
        raise RecipeRuntimeError(
            f"data.chat_template: '{value}' is neither a built-in template "
            f"({', '.join(BUILTIN_TEMPLATES)}) nor a .jinja file; name one of those, or the "
            "path of a Jinja template file relative to the recipe")
    path = resolve_path(value, recipe_dir)
    if not os.path.isfile(path):
        raise RecipeRuntimeError(
            f"data.chat_template: template file '{value}' not found (looked for {path}; the "
            "path is relative to the recipe); write it there, or name a built-in template ("
            f"{', '.join(BUILTIN_TEMPLATES)})")
    try:
        with open(path, encoding="utf-8-sig") as f:
            source = f.read()
    except UnicodeDecodeError as exc:
        raise RecipeRuntimeError(
            f"data.chat_template: template file '{value}' ({path}) is not UTF-8 text "
            f"({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise RecipeRuntimeError(f"data.chat_template: cannot read template file '{value}' "
                                 f"({path}): {exc.strerror}") from None
    origin = f"file '{value}'"
    problem = parse_problem(source)
    if problem:
        raise RecipeRuntimeError(f"data.chat_template: template {origin} does not parse: "
                                 f"{problem}; fix the Jinja syntax")
    return source, origin


def parse_problem(source: str) -> str | None:
    """Why ``source`` is not a Jinja template transformers can compile (the line and the
    message), or None. Parsed with the extensions transformers enables (``loopcontrols`` and
    its ``{% generation %}`` block)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[GenerationBlock, "jinja2.ext.loopcontrols"])
    environment.filters["tojson"] = lambda value, **kwargs: value
    try:
        environment.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    except jinja2.TemplateError as exc:
        return str(exc)
    return None


def template_sha256(source: str) -> str:
    """The sha256 of a template's source (hex)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def prepare_chat_tokenizer(tokenizer, recipe_data: dict, recipe_dir: str) -> tuple | None:
    """Set the run's chat template on ``tokenizer`` when the recipe's rows are conversations
    (``data.format``); returns ``(sha256, origin)`` of the template, None without
    ``data.format``. The template is ``data.chat_template`` (its special tokens added, an end
    token when there is none), else the tokenizer's own; neither is a :class:`RecipeRuntimeError`.
    Idempotent: a tokenizer already prepared keeps its template."""
    data = recipe_data.get("data") or {}
    if not data.get("format"):
        return None
    if getattr(tokenizer, PREPARED, None) is not None:
        return getattr(tokenizer, PREPARED)
    if data.get("chat_template"):
        source, origin = read_template(data["chat_template"], recipe_dir)
        tokenizer.chat_template = source
        add_template_tokens(tokenizer, source)  # a tokenizer's own template has its tokens
    elif isinstance(getattr(tokenizer, "chat_template", None), str):
        source, origin = tokenizer.chat_template, "of the tokenizer"
    else:
        where = component_ref(recipe_data["model"])[1] if recipe_data.get("model") else {}
        named = where.get("tokenizer") or where.get("path") or "the model's"
        raise RecipeRuntimeError(
            f"data.chat_template: the tokenizer {named} has no chat template, and data.format "
            f"'{data['format']}' rows are rendered with one; set data.chat_template to a "
            f"built-in template ({', '.join(BUILTIN_TEMPLATES)}) or a .jinja file relative to "
            "the recipe")
    prepared = (template_sha256(source), origin)
    setattr(tokenizer, PREPARED, prepared)
    return prepared


def add_template_tokens(tokenizer, source: str) -> list:
    """Add the markers ``source`` writes that ``tokenizer`` does not hold as one token, as
    special tokens; give a tokenizer without an end token the template's end-of-turn marker
    (the last marker written after a message's content). Returns the tokens added."""
    markers = list(dict.fromkeys(MARKER.findall(source)))
    vocab = tokenizer.get_vocab()
    missing = [m for m in markers if m not in vocab]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing},
                                     replace_extra_special_tokens=False)
    end = end_of_turn_marker(source)
    if tokenizer.eos_token is None and end is not None:
        tokenizer.eos_token = end
    return missing


def end_of_turn_marker(source: str) -> str | None:
    """The marker a template writes right after a message's content (ChatML: ``<|im_end|>``),
    or None."""
    position = source.find("content")
    if position < 0:
        return None
    found = MARKER.search(source, position)
    return found.group(0) if found else None


def fit_embeddings(model, tokenizer) -> bool:
    """Resize ``model``'s token embeddings to the tokenizer when tokens were added beyond them;
    True when resized."""
    if model is None or not hasattr(model, "get_input_embeddings"):
        return False
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer))
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "eos_token_id", None) is None:
        config.eos_token_id = tokenizer.eos_token_id
    return True
