"""Duplicate rows, within a split and across splits (eval or test rows that also sit in train:
leakage). Exact: the same row text; near-exact: the same after case folding, and with
punctuation and runs of whitespace taken out ("Hello,  World!" and "hello world")."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from .drops import SHOWN_ROWS

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
#: the columns a row's text is made of, in order (conversations: ``messages``)
TEXT_COLUMNS = ("text", "text_pair", "messages", "target")


def row_text(row: dict) -> str:
    """The text of a prepared row that duplicates are judged on (its text columns joined)."""
    parts = []
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if value is None:
            continue
        if column == "messages":
            value = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in value)
        elif isinstance(value, list):  # words of a token-classification row
            value = " ".join(str(v) for v in value)
        parts.append(str(value))
    if not parts:  # a task with columns of its own
        parts = [json.dumps(row, sort_keys=True, default=str)]
    return "\x1f".join(parts)


def keys(text: str) -> tuple:
    """``(exact, near)`` digests of a row's text."""
    near = _NOT_WORD.sub(" ", text.casefold()).strip()
    return (hashlib.sha1(text.encode("utf-8")).digest(),
            hashlib.sha1(near.encode("utf-8")).digest())


@dataclass
class Duplicates:
    """Rows of one split repeating an earlier row of it (``exact``; ``near``: exact or
    near-exact), and, for eval/test, rows also in train (``leaked_exact``, ``leaked``: exact or
    near-exact); the first row numbers of each (in split order, from 0)."""

    rows: int = 0
    exact: int = 0
    near: int = 0
    leaked_exact: int = 0
    leaked: int = 0
    first_rows: list = field(default_factory=list)
    first_leaked: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON form, with the shares of the split's rows."""
        def share(n):
            return round(n / self.rows, 6) if self.rows else 0.0

        out = {"exact": self.exact, "near_exact": self.near, "duplicate_share": share(self.near),
               "first_rows": self.first_rows}
        if self.first_leaked or self.leaked:
            out.update(leaked_exact=self.leaked_exact, leaked=self.leaked,
                       leaked_share=share(self.leaked), first_leaked_rows=self.first_leaked)
        return out


def preview(ds, rows: list, width: int = 60) -> list:
    """The start of the text of each of ``rows`` of a prepared split (to find them)."""
    shown = []
    for i in rows:
        text = " ".join(row_text(ds[i]).replace("\x1f", " | ").split())
        shown.append(text if len(text) <= width else text[:width - 3] + "...")
    return shown


def split_keys(ds) -> list:
    """``[(exact, near)]`` of every row of a prepared split."""
    columns = [c for c in TEXT_COLUMNS if c in ds.column_names]
    if not columns:
        columns = list(ds.column_names)
    rows = ds.select_columns(columns).to_list()
    return [keys(row_text(row)) for row in rows]


def find_duplicates(split_rows: dict) -> dict:
    """``{split: Duplicates}`` from ``{split: [(exact, near)]}``: within each split, and the
    eval/test rows also in train."""
    train = split_rows.get("train") or []
    train_exact = {exact for exact, _ in train}
    train_near = {near for _, near in train}
    found = {}
    for split, rows in split_rows.items():
        dup = Duplicates(rows=len(rows))
        seen_exact, seen_near = set(), set()
        for i, (exact, near) in enumerate(rows):
            if near in seen_near:
                dup.near += 1
                dup.exact += exact in seen_exact
                if len(dup.first_rows) < SHOWN_ROWS:
                    dup.first_rows.append(i)
            seen_exact.add(exact)
            seen_near.add(near)
            if split != "train" and near in train_near:
                dup.leaked += 1
                dup.leaked_exact += exact in train_exact
                if len(dup.first_leaked) < SHOWN_ROWS:
                    dup.first_leaked.append(i)
        found[split] = dup
    return found
