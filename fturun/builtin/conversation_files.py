"""The YAML (or JSON) conversation files both conversation sources read (``conversations``:
prompt -> response pairs, ``conversation_messages``: whole conversations)."""

from __future__ import annotations

import os

from fturun.api import RecipeRuntimeError


def conversations_in(files, encoding, field):
    """``(source, turns)`` for each conversation (a list of turns, as text) of the YAML (or
    JSON) documents ``files`` (as ``_from_generator`` passes them) hold as a list under
    ``field``; ``source`` is the file's name without extension. The one reader of both
    conversation sources."""
    import yaml

    for shard in files:  # gen_kwargs lists are sharded by datasets: one list, wrapped
        for path, _size, _mtime in shard:
            with open(path, encoding=encoding, errors="strict") as f:
                try:
                    document = yaml.safe_load(f)
                except yaml.YAMLError as exc:
                    raise RecipeRuntimeError(f"{path}: not valid YAML: {exc}") from None
            if not isinstance(document, dict) or not isinstance(document.get(field), list):
                keys = ", ".join(map(str, document)) if isinstance(document, dict) else \
                    type(document).__name__
                raise RecipeRuntimeError(
                    f"{path}: no list of conversations under '{field}' (found: {keys}); set "
                    "params.field")
            source = os.path.splitext(os.path.basename(path))[0]
            for conversation in document[field]:
                if isinstance(conversation, list):
                    yield source, ["" if t is None else str(t) for t in conversation]
