"""The one way fturun writes an output file: to a temporary name beside it, flushed and synced,
then renamed over the final name. A crash, a full disk or a reader in another process never
meets a half-written file: it sees the previous file, or none. Folders are written the same way
(:func:`partial_folder`, then :func:`replace_folder`)."""

from __future__ import annotations

import json
import os
import shutil


def write_text(path: str, text: str) -> str:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename); the temporary
    file is removed when writing fails (a full disk). Returns ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(path: str, value, indent: int | None = 2) -> str:
    """Write ``value`` as JSON (indented, UTF-8, a final newline) atomically. Returns ``path``."""
    return write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def write_lines(path: str, rows) -> str:
    """Write one JSON line per row atomically (predictions). Returns ``path``."""
    return write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def append_line(path: str, row: dict) -> None:
    """Append one JSON line (a log such as ``metrics.jsonl``): one ``write`` of a whole line,
    so concurrent readers see whole lines."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_json(path: str, default=None):
    """The JSON in ``path``, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def partial_folder(final: str, clear: bool = True) -> str:
    """Where ``final`` is written before :func:`replace_folder` puts it in place:
    ``final + ".partial"``; ``clear`` removes what a crashed save left there (only one process
    of a launch should clear it)."""
    partial = final + ".partial"
    if clear and os.path.isdir(partial):
        shutil.rmtree(partial)
    return partial


def replace_folder(partial: str, final: str) -> None:
    """Put a completely written folder in place of ``final``: a crash while writing leaves the
    previous ``final`` (or none) and a ``.partial`` folder, never a half-written ``final``."""
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(partial, final)
