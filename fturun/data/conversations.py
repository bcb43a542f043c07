"""Step 2 for conversation rows (``data.format``): each row mapped into one ``messages`` column,
a list of ``{role, content}`` (:mod:`fturun.chat.conversation`), whatever the format; and, after
tokenization, the rows whose trained tokens were all cut off dropped.

Formats and the columns they read (``data.columns`` renames them):

- ``messages``: ``messages``, a list of ``{role, content}`` (roles system, user, assistant, tool);
- ``sharegpt``: ``conversations``, a list of ``{from, value}`` (from human, gpt, system; user and
  assistant are taken too);
- ``alpaca``: ``instruction``, ``input`` (optional, may be empty) and ``output``: the user turn is
  the instruction (and the input after a blank line), the assistant turn the output;
- ``prompt_completion``: ``prompt`` and ``completion``: one user and one assistant turn.

``data.fold_system`` folds a leading system message into the first user turn (for templates
without a system role, such as Gemma's).

A row that does not fit its format is an error naming the split, the row (counting from 0) and
the field, with the number of such rows: nothing trains on half-read data.
"""

from __future__ import annotations

from ..chat.conversation import IGNORE, ROLES
from ..chat.render import fold_system
from ..core.errors import RecipeRuntimeError

#: format -> its column keys (``data.columns.<key>``) and their default source names
FORMAT_COLUMNS = {
    "messages": {"messages": "messages"},
    "sharegpt": {"messages": "conversations"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
}
OPTIONAL_COLUMNS = {"input"}
#: sharegpt ``from`` -> role
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool"}
SHOWN_PROBLEMS = 3


class RowProblem(Exception):
    """``data.fold_system`` folds a leading system message into the first user turn (for templates
without a system role, such as Gemma's).

A row that does not fit its format: ``field`` and what is wrong with it."""

    def __init__(self, field: str, what: str):
        self.field, self.what = field, what
        super().__init__(f"field '{field}' {what}")


def format_columns(fmt: str, columns: dict) -> dict:
    """Column key -> source column name of format ``fmt`` (``data.columns`` applied)."""
    return {key: columns.get(key, default) for key, default in FORMAT_COLUMNS[fmt].items()}


def select_conversations(ds, split: str, recipe_data: dict, context):
    """``ds`` as one ``messages`` column (see the module docstring); a missing column, or rows
    that do not fit the format, are a :class:`RecipeRuntimeError`."""
    fmt = recipe_data["format"]
    names = format_columns(fmt, recipe_data.get("columns") or {})
    present = list(ds.column_names)
    for key, name in names.items():
        if name not in present and key not in OPTIONAL_COLUMNS:
            raise RecipeRuntimeError(
                f"data.{split}: format '{fmt}' reads column '{name}' (data.columns.{key}), "
                f"which is not there; the columns are: {', '.join(present)}. Set "
                f"data.columns.{key} to the column holding it, or data.format to the form "
                "the rows have")
    names = {key: name for key, name in names.items() if name in present}
    task = getattr(context, "task_record", None)
    # a task that keeps the other columns (a reward's reference answer) loses only the format's
    removed = list(names.values()) if getattr(task, "keep_columns", False) else present
    if "messages" in present and "messages" not in removed:
        removed.append("messages")  # replaced by the mapped conversation
    mapped = ds.map(_to_messages, batched=True, with_indices=True, remove_columns=removed,
                    fn_kwargs={"fmt": fmt, "names": names,
                               "fold": bool(recipe_data.get("fold_system"))},
                    desc=f"{split}: {fmt} rows")
    bad = mapped.filter(lambda problem: bool(problem), input_columns="problem",
                        desc=f"{split}: rows that do not fit")
    if len(bad):
        shown = "; ".join(f"row {row}: {problem}" for row, problem in
                          zip(bad["row"][:SHOWN_PROBLEMS], bad["problem"][:SHOWN_PROBLEMS]))
        raise RecipeRuntimeError(
            f"data.{split}: {len(bad):,} of {len(ds):,} rows do not fit data.format '{fmt}' "
            f"(rows counted from 0): {shown}{' ...' if len(bad) > SHOWN_PROBLEMS else ''}. "
            f"Format '{fmt}' reads {_reads(fmt)}; fix those rows, or set data.format to the "
            "form the rows have")
    context.log(f"data.{split}: {len(ds):,} conversations (data.format '{fmt}')")
    return mapped.remove_columns(["problem", "row"])


def _reads(fmt: str) -> str:
    from ..chat.conversation import CHAT_FORMATS

    return CHAT_FORMATS[fmt]


def _to_messages(batch, indices, fmt, names, fold=False):
    out = {"messages": [], "problem": [], "row": []}
    for i, index in enumerate(indices):
        row = {key: batch[name][i] for key, name in names.items()}
        try:
            messages = row_messages(row, fmt)
            messages = fold_system(messages) if fold else messages
            problem = ""
        except RowProblem as exc:
            messages, problem = [], f"{exc} (column '{names.get(exc.field.split('[')[0], '')}')"
        out["messages"].append(messages)
        out["problem"].append(problem)
        out["row"].append(index)
    return out


def row_messages(row: dict, fmt: str) -> list:
    """One row (column key -> value) of format ``fmt`` as ``[{role, content}]``;
    :class:`RowProblem` when it does not fit."""
    if fmt in ("messages", "sharegpt"):
        messages = _turns(row.get("messages"), fmt)
    elif fmt == "alpaca":
        instruction = _text(row, "instruction")
        extra = row.get("input")
        if extra is not None and not isinstance(extra, str):
            raise RowProblem("input", f"is {type(extra).__name__}, not text")
        user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": _text(row, "output")}]
    else:
        messages = [{"role": "user", "content": _text(row, "prompt")},
                    {"role": "assistant", "content": _text(row, "completion")}]
    if not any(m["role"] == "assistant" for m in messages):
        raise RowProblem("messages", "has no assistant turn (nothing to learn)")
    return messages


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        raise RowProblem(key, "is missing")
    if not isinstance(value, str):
        raise RowProblem(key, f"is {type(value).__name__}, not text")
    if not value.strip():
        raise RowProblem(key, "is empty")
    return value


def _turns(turns, fmt: str) -> list:
    role_key, content_key = ("role", "content") if fmt == "messages" else ("from", "value")
    if not isinstance(turns, list) or not turns:
        what = "is missing" if turns is None else "is not a list of turns" \
            if not isinstance(turns, list) else "is empty"
        raise RowProblem("messages", what)
    messages = []
    for n, turn in enumerate(turns):
        where = f"messages[{n}]"
        if not isinstance(turn, dict):
            raise RowProblem(where, f"is {type(turn).__name__}, not an object with "
                                    f"'{role_key}' and '{content_key}'")
        role, content = turn.get(role_key), turn.get(content_key)
        if role is None:
            raise RowProblem(f"{where}.{role_key}", "is missing")
        if content is None:
            raise RowProblem(f"{where}.{content_key}", "is missing")
        if not isinstance(content, str):
            raise RowProblem(f"{where}.{content_key}", f"is {type(content).__name__}, not text")
        known = ROLES if fmt == "messages" else tuple(SHAREGPT_ROLES)
        if role not in known:
            raise RowProblem(f"{where}.{role_key}",
                             f"is '{role}', not one of {', '.join(known)}")
        role = role if fmt == "messages" else SHAREGPT_ROLES[role]
        if role == "assistant" and not content.strip():
            raise RowProblem(f"{where}.{content_key}", "is an empty assistant turn")
        messages.append({"role": role, "content": content})
    return messages


def drop_untrained_rows(ds, split: str, settings, context):
    """``ds`` without the rows whose trained tokens were all cut off by ``data.max_length``
    (their labels are all ignored): a warning counts them; none left is a
    :class:`RecipeRuntimeError`."""
    before = len(ds)
    ds = ds.filter(_has_trained_token, input_columns="labels", batched=True,
                   desc=f"{split}: rows with trained tokens")
    dropped = before - len(ds)
    if dropped and len(ds):
        context.log(f"warning: data.{split}: dropped {dropped:,} of {before:,} conversations "
                    f"whose trained tokens all lie beyond data.max_length={settings.max_length} "
                    "(raise data.max_length to keep them)")
    if len(ds) == 0:
        raise RecipeRuntimeError(
            f"data.{split}: every one of the {before:,} conversations has its trained tokens "
            f"beyond data.max_length={settings.max_length} (truncated away): nothing is left "
            "to train on; raise data.max_length, or set data.train_on='all'")
    return ds


def _has_trained_token(labels):
    return [any(label != IGNORE for label in row) for row in labels]
