"""Errors meant for people: each says where, what, and how to fix it. The CLI prints them without
a traceback and exits 2 (bad recipe or usage) or 1 (the run failed)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe, located by file, JSON path and (when known) line and
    column."""

    file: str
    path: str  # a JSON path such as "$.training.learning_rate"; "" for file-level problems
    message: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.path:
            where = f"{self.file}::{self.path}"
            if self.line is not None:
                where += f" (line {self.line}, col {self.col})"
            return f"{where}: {self.message}"
        if self.line is not None:
            return f"{self.file}:{self.line}:{self.col}: {self.message}"
        return f"{self.file}: {self.message}"

    @classmethod
    def located(cls, locate, path: str, message: str, file: str = "recipe") -> Problem:
        """A problem at the JSON path ``$.a.b[0]`` where ``locate`` (a recipe's ``locate``: keys ->
        ``(file, line, col)``) says its value came from: a file's line, or the override that set
        it; at ``file`` without ``locate``."""
        if locate is None:
            return cls(file, path, message)
        keys = tuple(int(index) if index else key
                     for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path))
        where, line, col = locate(keys)
        return cls(where, path, message, line, col)


class FturunError(Exception):
    """Base class of the errors fturun reports to the user without a traceback."""

    exit_code = 1


class RecipeError(FturunError):
    """A recipe that cannot be read or is not valid: every problem at once."""

    exit_code = 2

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(FturunError):
    """A command line that fturun cannot act on."""

    exit_code = 2


class PluginError(FturunError):
    """A plugin that failed to load or registered something invalid."""

    def __init__(self, plugin: str, message: str):
        self.plugin = plugin
        self.reason = message
        super().__init__(f"plugin '{plugin}': {message}")


class RecipeRuntimeError(FturunError):
    """A recipe that validated but cannot run as written (missing file, a column not in the data,
    target modules that match nothing, ...). The message says what to change."""

    exit_code = 1


class Interrupted(FturunError):
    """Training stopped by Ctrl-C or SIGTERM after saving a checkpoint: exit 130 or 143."""

    def __init__(self, message: str, exit_code: int):
        self.exit_code = exit_code
        super().__init__(message)


class EnvironmentFault(FturunError):
    """The machine refused what the run needs: a read-only or full disk, a missing permission, a
    file or folder that is not there. Not a mistake in the recipe and not a bug: the message
    names the path and what to do, without a traceback; exit 1."""

    exit_code = 1


#: errno -> (what happened, what to do about it)
_FAULTS = {
    "EROFS": ("read-only file system", "write to a folder on a writable disk, or remount this "
                                       "one read-write"),
    "ENOSPC": ("no space left on the device", "free some space on that disk, or write to a "
                                              "larger one; checkpoints written whole before "
                                              "this are kept, and --resume continues from the "
                                              "last one"),
    "EDQUOT": ("disk quota exceeded", "free some space within your quota, or write to another "
                                      "disk"),
    "EACCES": ("permission denied", "make it writable for this user, or write elsewhere"),
    "EPERM": ("operation not permitted", "make it writable for this user, or write elsewhere"),
    "ENOENT": ("no such file or folder", "check that it exists and was not removed or "
                                         "unmounted while the run was going"),
    "ENOTDIR": ("a part of this path is a file, not a folder", "move the file away, or use "
                                                               "another folder"),
    "EEXIST": ("a file is where a folder should be", "move the file away, or use another "
                                                     "folder"),
    "EISDIR": ("a folder is where a file should be", "move the folder away, or use another "
                                                     "one"),
}
#: below this much free space, a write that fails without saying why is taken for a full disk
#: (torch.save reports a full disk as "unexpected pos ..." rather than ENOSPC)
NEARLY_FULL = 4 * 1024 * 1024


def environment_fault(exc: BaseException, folder: str | None = None,
                      doing: str = "") -> EnvironmentFault | None:
    """``exc`` as an :class:`EnvironmentFault` when the machine caused it (an OSError of a
    read-only or full disk, a permission, a missing path, anywhere in its chain; or a
    RuntimeError while the disk holding the output ``folder`` is full), else None. ``doing`` says
    what fturun was doing (``"saving the model"``)."""
    if isinstance(exc, (FturunError, KeyboardInterrupt)):
        return None
    name, path = _fault_of(exc)
    if name is None and folder and isinstance(exc, RuntimeError):  # torch.save's write errors
        free = _free(folder)
        name = "ENOSPC" if free is not None and free < NEARLY_FULL else None
    if name is None:
        return None
    path = os.fsdecode(path) if path is not None else folder
    what, advice = _FAULTS[name]
    free = _free(path) if path is not None and name in ("ENOSPC", "EDQUOT") else None
    code = f"{name}, {_human(free)} free" if free is not None else name
    where = f" ({doing})" if doing else ""
    failure = "" if isinstance(exc, OSError) else \
        f" (The failure: {type(exc).__name__}: {_short(exc)})"
    return EnvironmentFault(f"{path or 'the output folder'}{where}: {what} ({code}); {advice}"
                            f"{_pointer(path, folder)}.{failure}")


def _fault_of(exc: BaseException) -> tuple:
    """``(errno name, path)`` of the first environment fault in ``exc``'s chain."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = errno.errorcode.get(getattr(exc, "errno", None))
        if isinstance(exc, OSError) and name in _FAULTS:
            return name, exc.filename
        if "No space left on device" in str(exc) or "os error 28" in str(exc):
            return "ENOSPC", None
        exc = exc.__cause__ or exc.__context__
    return None, None


def _pointer(path: str | None, folder: str | None) -> str:
    """Where fturun can be told to write instead."""
    if path is None or folder is None or _within(path, folder):
        return (" (fturun writes its checkpoints, model and logs under training.output_dir: "
                "set it with training.output_dir=PATH)")
    return (" (it is outside the output folder: the Hugging Face caches move with HF_HOME and "
            "HF_DATASETS_CACHE, the outputs with training.output_dir)")


def _within(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _free(path) -> int | None:
    from .resources import free_bytes

    try:
        return free_bytes(str(path))
    except (OSError, ValueError):
        return None


def _human(n: int) -> str:
    from .resources import human_bytes

    return human_bytes(n)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " ..."
