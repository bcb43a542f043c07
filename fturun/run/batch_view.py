"""``fturun check RECIPE --show-batch N``: what the model is trained on, token by token.

The first N training examples, each made into a batch of its own by the run's collator (the
Trainer's ``data_collator``: masks, packing and padding as in training), are printed with their
trained tokens marked ``[[...]]`` and written to ``OUTPUT_DIR/check_batch.jsonl``, one object per
example:

- ``"tokens"``: the decoded string of each input token; ``"trained"``: one boolean per token,
  whether its label is in the loss (label != -100). A causal LM's first token is predicted by
  nothing: the packing collator gives it no label, the padding one gives it a label the loss
  shifts away;
- a sequence label (classification) is not on any token: every token shows untrained, and
  ``"label"`` holds the example's label (its name when the task has a label map);
- labels of another sequence (seq2seq targets) are ``"label_tokens"``; labels that differ from
  the input token at their position (a masked LM's masked words) are ``"targets"`` (null where
  not trained).
"""

from __future__ import annotations

import os

from ..core.io import write_lines

BATCH_FILE = "check_batch.jsonl"
IGNORE = -100


def show_batch(build, collator, count: int, output_dir: str) -> str:
    """Print the first ``count`` training examples as ``collator`` makes them (see the module
    docstring) and write them to ``output_dir/check_batch.jsonl``; returns the file's path."""
    train = build.splits["train"]
    tokenizer = build.tokenizer
    names = dict(enumerate(build.context.label_names or []))
    examples = [example_view(_features(train[i]), collator, tokenizer, names)
                for i in range(min(count, len(train)))]
    print(f"\nthe first {len(examples)} training examples, trained tokens in [[...]]:")
    for number, example in enumerate(examples, 1):
        trained = sum(example["trained"])
        extra = f", label {example['label']!r}" if "label" in example else ""
        print(f"  example {number}: {len(example['tokens'])} tokens, {trained} trained{extra}")
        print("    " + marked_text(example, tokenizer).replace("\n", "\n    "))
        for text in example.get("row_texts", []):  # a pair's other row (rejected)
            print("    and: " + text.replace("\n", "\n    "))
    os.makedirs(output_dir, exist_ok=True)
    path = write_lines(os.path.join(output_dir, BATCH_FILE),
                       [{k: v for k, v in e.items() if k not in ("ids", "row_texts")}
                        for e in examples])
    print(f"  written to {path}")
    return path


def _features(row: dict) -> dict:
    """A dataset row without the text columns a collator does not take."""
    return {k: v for k, v in row.items() if not isinstance(v, str)}


def example_view(features: dict, collator, tokenizer, label_names: dict) -> dict:
    """One example collated alone: ``ids``, ``tokens``, ``trained`` and, where they apply,
    ``label``, ``label_tokens``, ``targets``."""
    batch = collator([features])
    ids = _row(batch["input_ids"])
    mask = _row(batch["attention_mask"]) if "attention_mask" in batch else [1] * len(ids)
    keep = [i for i, m in enumerate(mask) if m]
    ids = [ids[i] for i in keep]
    view = {"ids": ids, "tokens": [tokenizer.decode([i]) for i in ids],
            "trained": [False] * len(ids)}
    labels = batch.get("labels")
    if labels is None and "completion_mask" in batch:  # TRL's collators: no labels
        return _completion_view(batch, tokenizer)
    if labels is None:
        return view
    labels = _row(labels)
    if not isinstance(labels, list) or len(labels) == 1 and len(ids) != 1:
        value = labels[0] if isinstance(labels, list) else labels
        view["label"] = label_names.get(value, value)
    elif len(labels) == len(mask):
        labels = [labels[i] for i in keep]
        view["trained"] = [label != IGNORE for label in labels]
        if any(label not in (IGNORE, token) for label, token in zip(labels, ids)):
            view["targets"] = [tokenizer.decode([label]) if label != IGNORE else None
                               for label in labels]
    else:
        view["label_tokens"] = [tokenizer.decode([label]) for label in labels
                                if label != IGNORE]
    return view


def _completion_view(batch, tokenizer) -> dict:
    """A batch that marks its trained tokens with a ``completion_mask`` (TRL's preference
    collator: the chosen row, then the rejected one): the first row as the example, every
    further row under ``"rows"`` (each with its ``ids``, ``tokens``, ``trained``)."""
    rows = []
    masks = batch["attention_mask"].tolist()
    for ids, mask, completion in zip(batch["input_ids"].tolist(), masks,
                                     batch["completion_mask"].tolist()):
        keep = [i for i, m in enumerate(mask) if m]
        rows.append({"ids": [ids[i] for i in keep],
                     "tokens": [tokenizer.decode([ids[i]]) for i in keep],
                     "trained": [bool(completion[i]) for i in keep]})
    view = dict(rows[0])
    if len(rows) > 1:
        view["rows"] = [{k: v for k, v in row.items() if k != "ids"} for row in rows[1:]]
        view["row_texts"] = [marked_text(row, tokenizer) for row in rows[1:]]
    return view


def _row(value):
    """The first row of a batch tensor as a list (a packed batch is one row)."""
    value = value.tolist() if hasattr(value, "tolist") else value
    return value[0] if isinstance(value, list) and value and isinstance(value[0], list) \
        else value


def marked_text(example: dict, tokenizer) -> str:
    """The example's text, each run of trained tokens in ``[[...]]``."""
    parts, run, state = [], [], None
    for token_id, trained in zip(example["ids"], example["trained"]):
        if trained != state and run:
            parts.append(_decoded(run, state, tokenizer))
            run = []
        run.append(token_id)
        state = trained
    if run:
        parts.append(_decoded(run, state, tokenizer))
    return " ".join(parts)


def _decoded(ids, trained, tokenizer) -> str:
    text = tokenizer.decode(ids)
    return f"[[{text}]]" if trained else text
