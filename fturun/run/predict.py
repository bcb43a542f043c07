"""``fturun predict REF INPUT``: a trained model run over new rows, one JSON line per row.

INPUT is a CSV file (a header row), JSON lines (one object a line) or plain text (one row a
line), or ``-`` for stdin; the rows hold the columns the model's task reads, named as the
recipe it was trained with names them (``data.columns``): the text (and ``text_pair``) of a
classifier, the words of a tagger (a list, or a text split at spaces), a causal LM's prompt
(its ``messages`` for a chat model, or a text sent as a user turn through its chat template).
Every row is read and checked before the model runs: rows that cannot be read are one error
naming each row (exit 2), and nothing is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys

from ..core.errors import UsageError
from .inference import LoadedModel, generate_answer

FORMATS = ("csv", "jsonl", "text")
MAX_SHOWN_PROBLEMS = 10
BATCH_SIZE = 32


def input_format(path: str, given: str | None, text: str) -> str:
    """The format of INPUT: ``given``, else its extension, else (stdin) its first character:
    ``{`` JSON lines, otherwise text."""
    if given:
        return given
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if path == "-" and text.lstrip().startswith("{"):
        return "jsonl"
    return "text"


def read_rows(path: str, fmt: str | None, text_column: str) -> list:
    """``[(row number, row or None, problem or None)]`` of INPUT (row numbers as a person
    counts them: the line of a JSON line or text row, the record after a CSV's header)."""
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
    fmt = input_format(path, fmt, text)
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        return [(n, dict(row), None) for n, row in enumerate(reader, start=1)]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if fmt == "text":
            rows.append((n, {text_column: line}, None))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((n, None, f"not JSON ({exc.msg} at col {exc.colno})"))
            continue
        if isinstance(value, str):
            value = {text_column: value}
        if not isinstance(value, dict):
            rows.append((n, None, f"a JSON {type(value).__name__}, not an object"))
            continue
        rows.append((n, value, None))
    return rows


def reads(loaded: LoadedModel) -> tuple:
    """``(text column, pair column or None)`` the model's task reads, as its recipe names
    them."""
    columns = loaded.data.get("columns") or {}
    if loaded.data.get("format") == "prompt_completion":
        return columns.get("prompt", "prompt"), None
    return columns.get("text", "text"), columns.get("text_pair")


def check_rows(rows: list, loaded: LoadedModel, where: str) -> list:
    """The model's inputs of each row, ``[(row number, inputs)]``; every row that cannot be
    read is reported at once as a :class:`UsageError`."""
    task = loaded.task
    if task.labels not in ("classes", "tags") and not task.generates:
        raise UsageError(f"fturun predict answers classifiers, taggers and generating models; "
                         f"the task '{task.name}' of model '{loaded.source.ref}' is none of "
                         "them")
    text, pair = reads(loaded)
    problems, inputs = [], []
    for n, row, problem in rows:
        if problem is None:
            problem, value = _row_inputs(row, loaded, text, pair)
        if problem:
            problems.append(f"{where} row {n}: {problem}")
        else:
            inputs.append((n, value))
    if problems:
        more = len(problems) - MAX_SHOWN_PROBLEMS
        shown = problems[:MAX_SHOWN_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])
        raise UsageError("rows that cannot be read (nothing was predicted):\n  " +
                         "\n  ".join(shown))
    if not inputs:
        raise UsageError(f"{where}: no rows to predict")
    return inputs


def _row_inputs(row: dict, loaded: LoadedModel, text: str, pair: str | None) -> tuple:
    """``(problem, inputs)`` of one row."""
    if loaded.chat and isinstance(row.get("messages"), list):
        return None, {"messages": row["messages"]}
    if text not in row:
        names = ", ".join(sorted(map(str, row))) or "none"
        origin = "the recipe's data.columns.text" if text != "text" else "the task's default"
        return f"no column '{text}' (it has: {names}); the model reads '{text}' ({origin})", None
    value = row[text]
    if loaded.task.labels == "tags":
        words = value.split() if isinstance(value, str) else value
        if not isinstance(words, list) or not words or not all(isinstance(w, str)
                                                               for w in words):
            return f"'{text}' must be words: a text or a list of strings", None
        return None, {"words": words}
    if not isinstance(value, str) or not value.strip():
        return f"'{text}' is empty or not a text", None
    inputs = {"text": value}
    if pair and loaded.task.labels == "classes":
        if not isinstance(row.get(pair), str):
            return f"no text in column '{pair}' (the recipe's data.columns.text_pair)", None
        inputs["text_pair"] = row[pair]
    return None, inputs


def predict_rows(loaded: LoadedModel, inputs: list, progress=None) -> list:
    """One answer a row, in order: ``{"row", "label", "score"}`` (classes), ``{"row",
    "words", "tags"}`` (tags), ``{"row", "generated"}`` (generation)."""
    task = loaded.task
    answers = []
    step = BATCH_SIZE if task.labels else 1
    for start in range(0, len(inputs), step):
        batch = inputs[start:start + step]
        if task.labels == "classes":
            answers += _classify(loaded, batch)
        elif task.labels == "tags":
            answers += _tag(loaded, batch)
        else:
            answers += [{"row": n, "generated": _generate(loaded, value)} for n, value in batch]
        if progress is not None:
            progress.update(len(batch))
    return answers


def _encode(loaded: LoadedModel, first, second=None, **kwargs):
    batch = loaded.tokenizer(first, second, truncation=True, max_length=loaded.max_length,
                             padding=True, return_tensors="pt", **kwargs)
    device = next(loaded.model.parameters()).device
    return batch, {k: v.to(device) for k, v in batch.items() if k != "offset_mapping"}


def _classify(loaded: LoadedModel, batch: list) -> list:
    import torch

    pairs = [value.get("text_pair") for _, value in batch]
    _, tensors = _encode(loaded, [value["text"] for _, value in batch],
                         pairs if all(p is not None for p in pairs) else None)
    with torch.no_grad():
        probs = loaded.model(**tensors).logits.float().softmax(dim=-1)
    names = loaded.label_names()
    best = probs.argmax(dim=-1).tolist()
    return [{"row": n, "label": names[i] if i < len(names) else i,
             "score": round(float(probs[k, i]), 6)}
            for k, ((n, _), i) in enumerate(zip(batch, best))]


def _tag(loaded: LoadedModel, batch: list) -> list:
    """One tag a word: the tag of its first piece (words cut off by ``max_length``: none)."""
    import torch

    encoded, tensors = _encode(loaded, [value["words"] for _, value in batch],
                               is_split_into_words=True)
    with torch.no_grad():
        ids = loaded.model(**tensors).logits.argmax(dim=-1).tolist()
    names = loaded.label_names()
    answers = []
    for k, (n, value) in enumerate(batch):
        tags = [None] * len(value["words"])
        for position, word in enumerate(encoded.word_ids(k)):
            if word is not None and tags[word] is None:
                tags[word] = names[ids[k][position]]
        answers.append({"row": n, "words": value["words"], "tags": tags})
    return answers


def _generate(loaded: LoadedModel, value: dict) -> str:
    """A causal LM's (or an encoder-decoder's) answer to one row: a chat model's after its
    template's generation prompt, stopped at its end of turn; else the continuation of the
    prompt encoded as in training (a prompt/response pair's prompt keeps its end token)."""
    from ..chat.conversation import encode_rendered, end_of_turn_ids, prompt_and_answer, render

    tokenizer = loaded.tokenizer
    if loaded.chat:
        messages = value.get("messages") or [{"role": "user", "content": value["text"]}]
        if messages[-1].get("role") == "assistant":  # a training row: its last answer again
            prompt = prompt_and_answer(messages, tokenizer)[0]
        else:
            prompt = render(messages, tokenizer, add_generation_prompt=True)
        ids = encode_rendered(prompt, tokenizer)
        return generate_answer(loaded, ids, stop_ids=end_of_turn_ids(tokenizer))
    ids = tokenizer(value["text"], truncation=True, max_length=loaded.max_length,
                    return_token_type_ids=False)["input_ids"]
    special = {tokenizer.eos_token_id, tokenizer.sep_token_id} - {None}
    continues = not (loaded.data.get("columns") or {}).get("text_pair")
    if continues and len(ids) > 1 and ids[-1] in special and loaded.task.name == "causal-lm":
        ids = ids[:-1]  # a plain text is continued, not ended
    return generate_answer(loaded, ids)
