"""Strict JSON text, located. :func:`parse_json` reads a recipe file (or an override's value) and
refuses, each with its line, column and JSON path, what Python's ``json`` would let through
silently: a number that does not fit a double (``1e999`` would become infinity, ``1e-999``
zero), the ``NaN`` / ``Infinity`` literals (not JSON), and a key written twice in one object (the
last one would win). :func:`source_map` gives the position of every value."""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from json.decoder import scanstring

MAX_DEPTH = 64
#: an integer literal longer than this is past any double (and past Python's int parsing limit)
_MAX_INT_DIGITS = 400
_CONSTANTS = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class TextIssue:
    """One problem in JSON text. ``kind``: ``syntax`` (not JSON, a NaN/Infinity literal
    included), ``depth``, ``number`` (a literal that does not fit a double) or ``duplicate``.
    ``path`` is the JSON path at fault (None for the text as a whole)."""

    kind: str
    message: str
    line: int | None = None
    col: int | None = None
    path: tuple | None = None


class JsonTextError(ValueError):
    """JSON text that :func:`parse_json` refuses: every :class:`TextIssue` found."""

    def __init__(self, issues):
        self.issues = list(issues)
        super().__init__("; ".join(issue.message for issue in self.issues))


def parse_json(text: str):
    """``(value, positions)`` of strict JSON ``text`` (``positions`` as :func:`source_map`).
    Raise :class:`JsonTextError` with every located issue."""
    too_deep = TextIssue("depth", f"JSON nested too deeply (a recipe may nest at most "
                                  f"{MAX_DEPTH} levels)")
    try:
        value = json.loads(text, parse_constant=float, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise JsonTextError([TextIssue("syntax", f"invalid JSON: {_explain(exc)}", exc.lineno,
                                       exc.colno)]) from None
    except RecursionError:
        raise JsonTextError([too_deep]) from None
    if _depth(value) > MAX_DEPTH:
        raise JsonTextError([too_deep])
    scanner = _SourceScanner(text)
    positions = scanner.scan()
    if scanner.issues:
        raise JsonTextError(scanner.issues)
    return value, positions


def _parse_int(literal: str):
    # past a double anyway (the scan refuses it); int() would raise without a position
    return int(literal) if len(literal.lstrip("-")) <= _MAX_INT_DIGITS else math.inf


def _explain(exc: json.JSONDecodeError) -> str:
    """json's message, with the usual cause spelled out (a trailing comma, single quotes)."""
    before = exc.doc[: exc.pos].rstrip()
    here = exc.doc[exc.pos: exc.pos + 1]
    if before.endswith(",") and here in ("}", "]"):
        return f"trailing comma before '{here}'; remove the comma"
    if here == "'":
        return f"{exc.msg}; JSON strings and keys use double quotes"
    return exc.msg


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def number_issue(literal: str) -> tuple | None:
    """``(kind, message)`` when the JSON number ``literal`` has no faithful double, else None."""
    shown = literal if len(literal) <= 24 else f"{literal[:12]}... ({len(literal)} characters)"
    if literal in _CONSTANTS:
        return ("syntax", f"{literal} is not valid JSON (JSON numbers are finite); write a "
                          "number, or a string in double quotes")
    number = float(literal)
    if math.isinf(number):
        sign = "-" if number < 0 else ""
        return ("number", f"{shown} is out of range: it overflows to {sign}infinity (a number "
                          "may be at most about 1.8e308 in size); write a finite number")
    mantissa = re.split("[eE]", literal)[0]
    if number == 0 and any(digit in mantissa for digit in "123456789"):
        return ("number", f"{shown} is too small: it rounds to 0 (the smallest number is about "
                          "5e-324); write 0 or a larger number")
    return None


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?Infinity|NaN")


def source_map(text: str) -> dict:
    """Map each JSON path (a tuple of keys and indexes) of valid JSON ``text`` to the 1-based
    ``(line, col)`` where its value starts; an object key's own position is stored under
    ``path + ("<key>",)``. Iterative, so deep nesting cannot overflow the stack."""
    return _SourceScanner(text).scan()


class _SourceScanner:
    """The state of :func:`source_map`: a stack of open containers
    ``[kind, path, next_index, {key: position}]``, the path of the value expected next, and the
    issues found on the way (numbers without a double, keys written twice)."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.positions = {}
        self.stack = []
        self.issues = []

    def position(self, offset: int) -> tuple:
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return line + 1, offset - self.line_starts[line] + 1

    def skip_ws(self, i: int) -> int:
        return _WS.match(self.text, i).end()

    def key(self, i: int, parent: tuple) -> tuple:
        """Record the key starting at ``i``: ``(the offset after ':', its value's path)``."""
        key, j = scanstring(self.text, i + 1)
        here = self.position(i)
        seen = self.stack[-1][3]
        if key in seen:
            line, col = seen[key]
            first = f"col {col}" if len(self.line_starts) == 1 else f"line {line}, col {col}"
            self.issues.append(TextIssue(
                "duplicate", f"duplicate key {json.dumps(key)} (first at {first}); keep one "
                "(JSON readers differ on which one wins)", *here, parent + (key,)))
        seen[key] = here
        self.positions[parent + (key, "<key>")] = here
        return self.skip_ws(j) + 1, parent + (key,)

    def scan(self) -> dict:
        text = self.text
        i = self.skip_ws(1 if text.startswith("\ufeff") else 0)
        path, expecting_value = (), True
        while True:
            i = self.skip_ws(i)
            if i >= len(text):
                break
            if expecting_value:
                i, path, expecting_value = self.value(i, path)
            elif not self.stack:
                break
            else:
                i, path, expecting_value = self.after_value(i)
        return self.positions

    def value(self, i: int, path: tuple) -> tuple:
        """At the start of a value: ``(next offset, next path, expecting a value)``."""
        text, ch = self.text, self.text[i]
        self.positions[path] = self.position(i)
        if ch in "{[":
            self.stack.append(["object" if ch == "{" else "array", path, 0, {}])
            i = self.skip_ws(i + 1)
            if text[i] in "}]":  # empty
                self.stack.pop()
                return i + 1, path, False
            if ch == "{":
                return (*self.key(i, path), True)
            return i, path + (0,), True
        if ch == '"':
            _, i = scanstring(text, i + 1)
        elif text.startswith(("true", "null"), i):
            i += 4
        elif text.startswith("false", i):
            i += 5
        else:
            literal = _NUMBER.match(text, i).group()
            issue = number_issue(literal)
            if issue:
                self.issues.append(TextIssue(*issue, *self.position(i), path))
            i += len(literal)
        return i, path, False

    def after_value(self, i: int) -> tuple:
        """After a value: a ``,`` or the closing bracket of the innermost container."""
        top = self.stack[-1]
        if self.text[i] == ",":
            i = self.skip_ws(i + 1)
            if top[0] == "object":
                return (*self.key(i, top[1]), True)
            top[2] += 1
            return i, top[1] + (top[2],), True
        self.stack.pop()
        return i + 1, top[1], False
