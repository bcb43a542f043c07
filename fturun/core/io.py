"""The one way fturun writes an output file: to a temporary name beside it, flushed and synced,
then renamed over the final name. A crash, a full disk or a reader in another process never
meets a half-written file: it sees the previous file, or none. Folders are written the same way
(:func:`partial_folder`, then :func:`replace_folder`)."""

from __future__ import annotations

import json
import os
import shutil

from .errors import environment_fault


def write_text(path: str, text: str) -> str:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename); the temporary
    file is removed when writing fails (a full disk). Returns ``path``."""
    return _write_atomically(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> str:
    """:func:`write_text` for bytes (an image, say)."""
    return _write_atomically(path, data)


def _write_atomically(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            raise _naming(exc, path) from exc  # a failed write names no file: say which
        raise
    return path


def _naming(exc: OSError, path: str) -> OSError:
    """``exc`` again, naming ``path`` (``OSError(errno, ...)`` keeps its subclass)."""
    return OSError(exc.errno, exc.strerror or str(exc), path)


def write_json(path: str, value, indent: int | None = 2) -> str:
    """Write ``value`` as JSON (indented, UTF-8, a final newline) atomically. Returns ``path``."""
    return write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def write_lines(path: str, rows) -> str:
    """Write one JSON line per row atomically (predictions). Returns ``path``."""
    return write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def append_line(path: str, row: dict) -> None:
    """Append one JSON line (a log such as ``metrics.jsonl``): one ``write`` of a whole line,
    so concurrent readers see whole lines."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as exc:
        if exc.filename is None:
            raise _naming(exc, path) from exc
        raise


def read_lines(path: str) -> list:
    """The JSON rows of a file written by :func:`append_line` (``[]`` when it is missing); a
    line that does not parse (the last line of a log cut by a crash or a full disk) is
    skipped."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except FileNotFoundError:
        pass
    return rows


def read_json(path: str, default=None):
    """The JSON in ``path``, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def writable_folder(path: str) -> str:
    """Create the output folder ``path`` (and its parents) when missing and check that a file
    can be written in it, before anything depends on it (an MLflow run, hours of training). A
    read-only or full disk, a missing permission or a file in the way raises
    :class:`~fturun.core.errors.EnvironmentFault` naming ``path``. Returns ``path``."""
    probe = os.path.join(path, f".fturun-write-test.{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w", encoding="utf-8") as f:
            f.write("ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        fault = environment_fault(OSError(exc.errno, exc.strerror or str(exc), path), path,
                                  "the output folder")
        raise (fault or exc) from None
    finally:
        try:
            os.remove(probe)
        except OSError:
            pass
    return path


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
    previous ``final`` (or none) and a ``.partial`` folder, never a half-written ``final``. The
    previous ``final`` is renamed away before it is deleted, so a crash while deleting it
    leaves a half-deleted ``final.old``, never a half-deleted ``final``."""
    old = final + ".old"
    if os.path.isdir(old):
        shutil.rmtree(old)
    if os.path.isdir(final):
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
