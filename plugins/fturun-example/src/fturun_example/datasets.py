"""The ``sqlite`` dataset source: the rows of one SELECT query on a SQLite database file, read with
the standard library's ``sqlite3`` (the database is opened read-only)."""

from __future__ import annotations

import os
import re

from fturun.api import RecipeRuntimeError

#: what the params schema and the factory accept as a query: a SELECT (any case)
SELECT_PATTERN = r"^\s*[Ss][Ee][Ll][Ee][Cc][Tt]\b"


def load_sqlite(params, context):
    """``datasets.Dataset`` with one row per result row and one column per result column."""
    import sqlite3
    from pathlib import Path

    query = params["query"]
    if not re.match(SELECT_PATTERN, query):
        first = query.split(None, 1)[0] if query.strip() else "an empty query"
        raise RecipeRuntimeError(f"sqlite dataset: params.query must be a SELECT statement, "
                                 f"not {first!r}; the dataset source only reads rows")
    path = context.resolve_path(params["path"])
    if not os.path.isfile(path):
        raise RecipeRuntimeError(f"sqlite dataset: database '{params['path']}' not found "
                                 f"(looked for {path})")
    try:
        # mode=ro: a query can never change the database, and a wrong path is not created
        connection = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise RecipeRuntimeError(f"sqlite dataset: cannot open {path}: {exc}") from None
    try:
        cursor = connection.execute(query)
        columns = [d[0] for d in cursor.description]
        rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise RecipeRuntimeError(f"sqlite dataset: query failed on {path}: {exc}") from None
    finally:
        connection.close()
    if len(set(columns)) != len(columns):
        raise RecipeRuntimeError(f"sqlite dataset: the query returns duplicate column names "
                                 f"({', '.join(columns)}); give them distinct names with AS")
    if not rows:
        raise RecipeRuntimeError(f"sqlite dataset: the query returned no rows from {path}")
    return _to_dataset(rows)


def _to_dataset(rows):
    from datasets import Dataset

    try:
        return Dataset.from_list(rows)
    except Exception as exc:  # pyarrow: a column whose values have mixed types
        raise RecipeRuntimeError(f"sqlite dataset: the rows do not fit a table ({exc}); SQLite "
                                 "columns can mix types: CAST them in the query, e.g. "
                                 "CAST(label AS TEXT) AS label") from None
