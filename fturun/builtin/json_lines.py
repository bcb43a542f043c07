"""Where a JSON or JSON Lines data file does not parse, as ``path:line:col: message``: the
``datasets`` JSON reader names only a row or a byte position, and no file."""

from __future__ import annotations

import json
import os


def json_problem(paths, encoding: str = "utf-8") -> str | None:
    """``"path:line:col: what; how to fix"`` for the first file of ``paths`` that is neither JSON
    Lines (one object per line) nor one JSON document, else None. A ``.jsonl`` file (or one
    whose first line is an object by itself) is read line by line; any other as a document."""
    for path in paths:
        try:
            with open(path, encoding=encoding) as f:
                text = f.read()
        except UnicodeDecodeError as exc:
            return (f"{path}: not {encoding} text ({exc.reason} at byte {exc.start}); set "
                    "params.encoding")
        except OSError as exc:
            return f"{path}: cannot read: {exc.strerror}"
        problem = _lines_problem(path, text) if _is_json_lines(path, text) else \
            _document_problem(path, text)
        if problem:
            return problem
    return None


def _is_json_lines(path: str, text: str) -> bool:
    if os.path.splitext(path)[1].lower() == ".jsonl":
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict) and first.strip() != text.strip()
    except ValueError:
        return False


def _lines_problem(path: str, text: str) -> str | None:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return (f"{path}:{number}:{exc.colno}: {exc.msg}; fix that line (JSON Lines: one "
                    "JSON object per line)")
        if not isinstance(value, dict):
            kind = "array" if isinstance(value, list) else type(value).__name__
            return (f"{path}:{number}:1: a JSON {kind}, not an object; JSON Lines holds one "
                    "object per line, e.g. {\"text\": \"...\", \"label\": \"...\"}")
    return None


def _document_problem(path: str, text: str) -> str | None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}; fix the JSON there"
    return None
