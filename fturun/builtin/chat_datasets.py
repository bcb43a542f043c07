"""Built-in conversation sources in ``messages`` form: one row per conversation, for recipes with
``data.format: "messages"`` (chat templates, completion-only loss)."""

from __future__ import annotations

from fturun.api import hookimpl

from .conversation_files import conversations_in
from .datasets import CONVERSATIONS_SCHEMA, _file_stats, _from_generator, _paths

CONVERSATION_MESSAGES_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        # the files as the pairs loader reads them
        **{key: CONVERSATIONS_SCHEMA["properties"][key] for key in ("path", "encoding", "field")},
        "roles": {"type": "array", "items": {"enum": ["user", "assistant"]}, "minItems": 2,
                  "maxItems": 2, "uniqueItems": True, "default": ["user", "assistant"],
                  "description": "the roles of a conversation's first and second turn; they "
                                 "alternate from there"},
    },
}


def load_conversation_messages(params, context):
    """Conversations from YAML (or JSON) files holding lists of conversations, each a list of
    turns (e.g. ``package:chatterbot_corpus/data/english/*.yml``): one row per conversation of
    two turns or more, ``messages`` (``{role, content}``, the roles alternating, user first by
    default) and ``source`` (the file's name without extension)."""
    from datasets import Features, List, Value

    files = _file_stats(_paths(context, params["path"]))
    features = Features({"messages": List({"role": Value("string"),
                                           "content": Value("string")}),
                         "source": Value("string")})
    return _from_generator(_message_rows, files, features, f"{len(files)} file(s)",
                           params.get("encoding", "utf-8"),
                           field=params.get("field", "conversations"),
                           roles=tuple(params.get("roles", ["user", "assistant"])))


def _message_rows(files, encoding, field, roles):
    for source, turns in conversations_in(files, encoding, field):
        if len(turns) >= 2:
            yield {"messages": [{"role": roles[i % 2], "content": turn}
                                for i, turn in enumerate(turns)], "source": source}


@hookimpl
def fturun_register_datasets(register):
    """The built-in conversation sources in messages form."""
    register("conversation_messages", load_conversation_messages, CONVERSATION_MESSAGES_SCHEMA,
             "Whole conversations as {role, content} messages from YAML/JSON lists of "
             "conversations (chatterbot-corpus), for data.format 'messages'")
