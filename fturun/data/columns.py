"""Step 2: the columns a task needs, under their standard names (``text``, ``text_pair``,
``labels``, ``target``), as text; rows with empty text (or an empty target, or no label) are
dropped with a warning that says how many."""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError
from .drops import failing_rows, record_drop
from .features import STRING_DTYPES, as_string_column, column_dtype, is_list_column

STANDARD_COLUMNS = ("text", "text_pair", "target", "labels")


def select_columns(ds, split: str, columns: dict, task, context):
    """``ds`` with only the columns ``task`` reads (``data.columns`` names them), renamed to
    the standard names, text columns as strings, and without rows lacking text, target or
    label."""
    wanted = wanted_columns(list(ds.column_names), split, columns, task, context)
    ds = ds.select_columns(list(wanted))
    renames = {src: dst for src, dst in wanted.items() if src != dst}
    if renames:
        ds = ds.rename_columns(renames)
    ds = _text_as_strings(ds, split, wanted, task)
    first = task.columns[0] if task.columns else "text"
    return drop_empty_rows(ds, split, columns.get(first, first), context,
                           text_columns=task.columns or ("text",))


def _own_columns(present: list, split: str, columns: dict, task) -> dict:
    """Source column -> name for a task with columns of its own (``Task.columns``)."""
    wanted = {}
    for name in task.columns:
        source = columns.get(name, name)
        if source not in present:
            raise RecipeRuntimeError(
                f"data.{split}: column '{source}' ({name}) not found; the columns are: "
                f"{', '.join(present)}. Set data.columns.{name} to the column holding it "
                f"(task '{task.name}' reads {', '.join(task.columns)})")
        wanted[source] = name
    return wanted


def wanted_columns(present: list, split: str, columns: dict, task, context) -> dict:
    """Source column -> standard name, for the columns ``task`` reads; a missing column is a
    :class:`RecipeRuntimeError` that lists the columns there are (a test split may lack labels
    and targets: predictions only)."""
    if task.columns:
        wanted = _own_columns(present, split, columns, task)
        if task.keep_columns:  # the others as they are, after the task's own
            wanted.update({c: c for c in present if c not in wanted and c not in task.columns})
        return wanted
    listed = ", ".join(present)
    text_col = columns.get("text", "text")
    if text_col not in present:
        raise RecipeRuntimeError(
            f"data.{split}: text column '{text_col}' not found; the columns are: {listed}. "
            f"Set data.columns.text to the column holding the "
            f"{'words' if task.words else 'text'}")
    wanted = {text_col: "text"}
    pair_col = columns.get("text_pair")
    if pair_col is not None:
        if pair_col not in present:
            raise RecipeRuntimeError(
                f"data.{split}: text_pair column '{pair_col}' not found; the columns are: "
                f"{listed}. Set data.columns.text_pair to the second text column")
        wanted[pair_col] = "text_pair"
    if task.labels is not None:
        label_col = columns.get("label", "label")
        if label_col not in present and "label" not in columns and "labels" in present:
            label_col = "labels"
        if label_col in present:
            wanted[label_col] = "labels"
        elif not (split == "test" and task.test_labels_optional):
            what = "tags (a list per row, one per word)" if task.words else "label"
            raise RecipeRuntimeError(
                f"data.{split}: label column '{label_col}' not found; the columns are: "
                f"{listed}. Set data.columns.label to the column holding the {what}")
        else:
            context.log(f"data.test has no '{label_col}' column: predictions only, no test "
                        "metrics")
    if task.target:
        target_col = columns.get("target", "target")
        if target_col in present:
            wanted[target_col] = "target"
        elif split != "test":
            raise RecipeRuntimeError(
                f"data.{split}: task '{task.name}' needs a target column (the text the "
                f"model learns to produce) and '{target_col}' is not one; the columns are: "
                f"{listed}. Set data.columns.target to the column holding the target text")
        else:
            context.log(f"data.test has no '{target_col}' column: predictions only, no test "
                        "metrics")
    return wanted


def _text_as_strings(ds, split: str, wanted: dict, task):
    """Text columns cast to strings; lists are refused (except a task's words), and so are
    class labels that are lists or objects in some rows."""
    if task.labels == "classes" and "labels" in ds.column_names and \
            not _scalar_feature(ds.features["labels"]):
        source = next((src for src, dst in wanted.items() if dst == "labels"), "labels")
        raise RecipeRuntimeError(
            f"data.{split}: column '{source}' holds lists or objects (in some rows at least), "
            f"not one label per row; task '{task.name}' reads one class name or id per row "
            "from data.columns.label (a tag per word is task token-classification)")
    for column in ("text", "text_pair", "target", *task.columns):
        if column not in ds.column_names:
            continue
        if column == "text" and task.words and is_list_column(ds, column):
            continue
        if column in task.columns and _is_conversation_column(ds, column):
            continue  # a task's own column in chat form: the task's tokenize renders it
        if column_dtype(ds, column) not in STRING_DTYPES:
            if is_list_column(ds, column) or not _scalar_feature(ds.features[column]):
                source = next((src for src, dst in wanted.items() if dst == column), column)
                raise RecipeRuntimeError(
                    f"data.{split}: column '{source}' holds lists or objects, not text; task "
                    f"'{task.name}' reads one text per row from data.columns.{column}")
            ds = as_string_column(ds, column)
    return ds


def _is_conversation_column(ds, column: str) -> bool:
    """The column holds lists of ``{role, content}`` turns."""
    feature = ds.features.get(column)
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    return isinstance(inner, dict) and {"role", "content"} <= set(inner)


def _scalar_feature(feature) -> bool:
    """A plain value per row (a ``Value`` or ``ClassLabel``), not a list, an object or mixed
    JSON (``datasets``' ``Json`` feature of a column whose rows differ in kind)."""
    from datasets import ClassLabel, Value

    return isinstance(feature, (Value, ClassLabel))


def drop_empty_rows(ds, split: str, text_col: str, context, text_columns=("text",)):
    """``ds`` without rows whose text (or target, or one of a task's own ``text_columns``) is
    empty or whose label is missing; a warning says how many went, and no row left is a
    :class:`RecipeRuntimeError`."""
    before, before_ds = len(ds), ds
    checked = dict.fromkeys([*STANDARD_COLUMNS, *text_columns])
    present = [c for c in checked if c in ds.column_names]
    ds = ds.filter(_has_text_and_label, batched=True, desc=f"drop empty {split} rows",
                   fn_kwargs={"columns": present})
    dropped = before - len(ds)
    what = " or an empty target" if "target" in ds.column_names else ""
    what += " or no label" if "labels" in ds.column_names else ""
    if dropped:  # for the data report: the reason and the first row numbers
        rows = failing_rows(before_ds, _has_text_and_label, {"columns": present})
        record_drop(context, split, f"empty or whitespace-only text{what}", dropped, rows)
    if dropped and len(ds):
        context.log(f"warning: data.{split}: dropped {dropped:,} of {before:,} rows with empty "
                    f"text{what} (column '{text_col}')")
    if len(ds) == 0:
        raise RecipeRuntimeError(f"data.{split} has no rows with text (all {before:,} are "
                                 f"empty{what}); check data.columns.text ('{text_col}')")
    return ds


def _has_text_and_label(batch, columns):
    keep = []
    for i in range(len(batch[columns[0]])):
        ok = True
        for column in columns:
            value = batch[column][i]
            if value is None or (column != "labels" and not _has_content(value)):
                ok = False
                break
        keep.append(ok)
    return keep


def _has_content(value) -> bool:
    if isinstance(value, (list, tuple)):  # words of a token-classification row
        return any(str(word).strip() for word in value if word is not None)
    return bool(str(value).strip())
