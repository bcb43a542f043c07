"""What validation knows about conversation rows (``data.format``, ``data.chat_template``,
``data.train_on``, the format's ``data.columns``): reported before any data or model loads,
each located at its key with what to do."""

from __future__ import annotations

from ..chat.templates import template_problem

#: the ``data`` keys of conversation rows
CHAT_KEYS = ("format", "chat_template", "train_on", "fold_system")
#: ``data.format`` -> the ``data.columns`` keys it reads
FORMAT_COLUMN_KEYS = {
    "messages": ("messages",), "sharegpt": ("messages",),
    "alpaca": ("instruction", "input", "output"), "prompt_completion": ("prompt", "completion"),
}
PLAIN_COLUMN_KEYS = ("text", "text_pair", "label", "target")


def format_reads(data_section: dict) -> tuple:
    """The ``data.columns`` keys the recipe's ``data.format`` reads (none without one)."""
    fmt = data_section.get("format")
    return FORMAT_COLUMN_KEYS.get(fmt, ()) if isinstance(fmt, str) else ()


def check_chat_data(base_dir: str, data_section: dict, record, add, registry) -> None:
    """The conversation settings of a recipe in folder ``base_dir`` whose task is ``record``
    (a :class:`fturun.plugin.tasks.Task`); ``add(path, message)`` reports each problem."""
    present = [key for key in CHAT_KEYS if data_section.get(key) is not None]
    takes = [t.name for t in registry.tasks.values() if "format" in t.data_keys]
    if "format" not in record.data_keys:
        for key in present:
            what = "picks the trained turns of conversation rows" if key == "train_on" else \
                "folds system messages into user turns" if key == "fold_system" else \
                "renders conversation rows" if key == "chat_template" else \
                "makes the rows conversations"
            add(["data", key], f"data.{key} {what} (data.format, task "
                f"{' or '.join(takes) or 'causal-lm'}); task '{record.name}' has no turns: "
                f"remove data.{key}")
        return
    fmt = data_section.get("format")
    if fmt is None:
        for key in present:
            add(["data", key], f"data.{key} needs conversation rows: set data.format ("
                f"{', '.join(FORMAT_COLUMN_KEYS)}); plain text rows have no turns, remove "
                f"data.{key} for them")
        _check_columns(data_section, None, add)
        return
    if data_section.get("block_size") is not None:
        add(["data", "block_size"], "data.format rows are whole conversations, not blocks of "
            "a token stream: remove data.block_size (data.packing packs them without padding)")
    template = data_section.get("chat_template")
    if isinstance(template, str) and template:
        problem = template_problem(template, base_dir)
        if problem:
            add(["data", "chat_template"], problem)
    _check_columns(data_section, fmt, add)


def _check_columns(data_section: dict, fmt, add) -> None:
    """``data.columns`` keys that the rows' form does not read."""
    columns = data_section.get("columns")
    if not isinstance(columns, dict):
        return
    reads = FORMAT_COLUMN_KEYS.get(fmt, ()) if fmt else ()
    for key in columns:
        if fmt and key in PLAIN_COLUMN_KEYS:
            add(["data", "columns", key], f"data.format '{fmt}' does not read data.columns."
                f"{key}; it reads data.columns.{', .'.join(reads)}: map those instead")
        elif key not in PLAIN_COLUMN_KEYS and key not in reads:
            owners = [f for f, keys in FORMAT_COLUMN_KEYS.items() if key in keys]
            if not owners:
                continue  # another task's own column: task_rules' concern
            now = f"data.format is '{fmt}'" if fmt else "data.format is not set"
            add(["data", "columns", key], f"data.columns.{key} is a column of data.format "
                f"{' or '.join(owners)}, and {now}; remove it or set data.format")
