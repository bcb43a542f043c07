"""Errors meant for people: each says where, what, and how to fix it. The CLI prints them without
a traceback and exits 2 (bad recipe or usage) or 1 (the run failed)."""

from __future__ import annotations

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
