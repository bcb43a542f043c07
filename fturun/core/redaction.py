"""Keep credentials out of everything fturun logs or prints: MLflow params, tags and artifacts, and
the console. A value is secret when its key looks like a credential (token, password, secret,
api key, ...), when it is the value of such an environment variable (HF_TOKEN,
MLFLOW_TRACKING_PASSWORD, AWS_SECRET_ACCESS_KEY, ...), or when it looks like a Hugging Face token;
a recipe's own secret-keyed values are remembered too (:func:`remember_recipe_secrets`). Every
file uploaded goes through :func:`redacted_for_upload`."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager

SECRET_KEY = re.compile(r"(^|[_\-.])(token|password|passwd|secret|secret[_-]?key|api[_-]?key|"
                        r"access[_-]?key|credentials?|auth)($|[_\-.])", re.I)
TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
REDACTED = "***"
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words

_remembered: set = set()


def environ_snapshot() -> dict:
    """A copy of ``os.environ`` that is safe while other threads change it (MLflow's telemetry
    thread removes variables): iterating ``os.environ`` itself, or ``dict(os.environ)``, reads
    each key after listing them all and raises ``KeyError`` for one removed meanwhile. The
    keys are listed at once (``list`` of the underlying dict), each value read with ``get``."""
    snapshot = {}
    for key in list(os.environ):
        value = os.environ.get(key)
        if value is not None:
            snapshot[key] = value
    return snapshot


def secret_values() -> set:
    """Values of credential-like environment variables, plus remembered recipe secrets."""
    values = {v for k, v in environ_snapshot().items()
              if SECRET_KEY.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return values | _remembered


def redact_text(text: str) -> str:
    """``text`` with every known secret value and token-like string replaced by ``***``."""
    if not text:
        return text
    for value in sorted(secret_values(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return TOKEN_LIKE.sub(REDACTED, text)


def redact(key, value):
    """A value as it may be logged: ``***`` under a credential-like key, else scrubbed text."""
    last = str(key).rsplit(".", 1)[-1]
    if SECRET_KEY.search(last) and value not in (None, "", False, True):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_tree(data, key=""):
    """A copy of a JSON tree with secret values replaced."""
    if isinstance(data, dict):
        return {k: redact_tree(v, k) if isinstance(v, (dict, list)) else redact(k, v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [redact_tree(v, key) if isinstance(v, (dict, list)) else redact(key, v)
                for v in data]
    return redact(key, data)


def redact_override(text: str) -> str:
    """``key=value`` with the value hidden when the key looks like a credential."""
    key, sep, value = text.partition("=")
    return f"{key}{sep}{redact(key.rsplit('.', 1)[-1], value)}" if sep else redact_text(text)


def remember_recipe_secrets(data) -> None:
    """Remember the values of a recipe's credential-like keys so that console output and logs
    redact them wherever they appear."""
    stack = [("", data)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.items())
        elif isinstance(node, list):
            stack.extend((key, v) for v in node)
        elif SECRET_KEY.search(str(key)) and isinstance(node, str) and \
                len(node) >= MIN_SECRET_LENGTH:
            _remembered.add(node)


#: files read for secrets before they are uploaded (weights and other binary files are not)
TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".tsv", ".jinja",
                 ".cfg", ".ini", ".py", ".log")
MAX_SCANNED_BYTES = 50 * 1024 * 1024


@contextmanager
def redacted_for_upload(path: str):
    """``path`` as it may leave the machine: itself when none of its text files (itself, or
    those in the folder) holds a secret (:func:`redact_text`); else a temporary copy of the
    same name in which they are redacted, removed after the block."""
    files = [path] if os.path.isfile(path) else [
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    dirty = {}
    for file in files:
        if not file.lower().endswith(TEXT_SUFFIXES):
            continue
        try:
            if os.path.getsize(file) > MAX_SCANNED_BYTES:
                continue
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        clean = redact_text(text)
        if clean != text:
            dirty[os.path.relpath(file, path) if file != path else ""] = clean
    if not dirty:
        yield path
        return
    scratch = tempfile.mkdtemp(prefix="fturun-redacted-")
    try:
        copy = os.path.join(scratch, os.path.basename(os.path.normpath(path)))
        if os.path.isfile(path):
            shutil.copyfile(path, copy)
        else:
            shutil.copytree(path, copy)
        for relative, clean in dirty.items():
            with open(os.path.join(copy, relative) if relative else copy, "w",
                      encoding="utf-8") as f:
                f.write(clean)
        yield copy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class RedactingStream:
    """A text stream wrapper that redacts secrets from everything written through it."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(redact_text(text))

    def __getattr__(self, name):
        return getattr(self._stream, name)
