"""The ``preference_pairs`` dataset source: preference pairs from conversation files (YAML or
JSON holding lists of conversations, each a list of turns, e.g. the ``chatterbot-corpus``
package). Each conversation's first turn is the prompt and its second turn the chosen answer;
the rejected answer is the answer of another conversation, drawn with ``params.seed``, so the
pairs are the same on every run."""

from __future__ import annotations

import glob
import os
import random

from fturun.api import RecipeRuntimeError

PAIRS_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"description": "a file, a glob or a list of them (relative to the recipe, or "
                                "package:NAME/...)",
                 "anyOf": [{"type": "string", "minLength": 1},
                           {"type": "array", "items": {"type": "string", "minLength": 1},
                            "minItems": 1}]},
        "field": {"type": "string", "minLength": 1, "default": "conversations",
                  "description": "the key of each file's mapping that holds the conversations"},
        "seed": {"type": "integer", "minimum": 0, "default": 0,
                 "description": "seed of the draw of each pair's rejected answer"},
        "encoding": {"type": "string", "default": "utf-8"},
        "unpaired": {"type": "boolean", "default": False,
                     "description": "unpaired rows for task kto instead: each pair as two rows "
                                    "of prompt, completion and label (true for the chosen "
                                    "answer, false for the rejected one)"},
    },
}


def _files(params, context) -> list:
    paths = params["path"] if isinstance(params["path"], list) else [params["path"]]
    files = []
    for path in (context.resolve_path(p) for p in paths):
        files += sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise RecipeRuntimeError(f"preference_pairs: no files match {', '.join(paths)}; set "
                                 "params.path to conversation files (YAML or JSON)")
    return files


def question_answers(files, field: str, encoding: str) -> list:
    """``[(question, answer)]``: the first two turns of every conversation with two text
    turns."""
    import yaml

    pairs = []
    for path in files:
        with open(path, encoding=encoding) as f:
            try:
                document = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise RecipeRuntimeError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get(field), list):
            raise RecipeRuntimeError(f"{path}: no list of conversations under '{field}'; set "
                                     "params.field")
        for turns in document[field]:
            if isinstance(turns, list) and len(turns) >= 2 and \
                    all(isinstance(t, str) and t.strip() for t in turns[:2]):
                pairs.append((turns[0].strip(), turns[1].strip()))
    return pairs


def make_pairs(question_answer: list, seed: int) -> list:
    """One ``{"prompt", "chosen", "rejected"}`` row per question: its own answer chosen, the
    answer of another question with a different answer rejected (drawn with ``seed``)."""
    rng = random.Random(seed)
    answers = [answer for _, answer in question_answer]
    if len(set(answers)) < 2:
        raise RecipeRuntimeError("preference_pairs: the files hold fewer than two different "
                                 "answers, so no pair can be made")
    rows = []
    for question, answer in question_answer:
        rejected = answer
        while rejected == answer:
            rejected = answers[rng.randrange(len(answers))]
        rows.append({"prompt": question, "chosen": answer, "rejected": rejected})
    return rows


def load_preference_pairs(params, context):
    """``datasets.Dataset`` of ``prompt``, ``chosen``, ``rejected`` rows (with
    ``params.unpaired``: ``prompt``, ``completion``, ``label``)."""
    from datasets import Dataset

    files = _files(params, context)
    qa = question_answers(files, params["field"], params["encoding"])
    pairs = make_pairs(qa, params["seed"])
    if params["unpaired"]:
        pairs = unpaired(pairs)
    return Dataset.from_list(pairs)


def unpaired(pairs: list) -> list:
    """Each pair as two rows: ``{"prompt", "completion": chosen, "label": True}`` and
    ``{"prompt", "completion": rejected, "label": False}``."""
    return [{"prompt": pair["prompt"], "completion": pair[side], "label": side == "chosen"}
            for pair in pairs for side in ("chosen", "rejected")]
