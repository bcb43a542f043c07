"""Built-in rule rewards (``rewards`` of a task that takes them, such as fturun-trl's ``grpo``):
a regular-expression (format) match, a length target, and an exact or numeric match against a
reference column of the row. Each scores every completion as the reward contract asks
(``fturun_register_rewards``): one float per completion, None where it does not apply (a
missing reference). A completion in conversation form (a list of ``{role, content}``) is
scored on its last message's content."""

from __future__ import annotations

import re

from fturun.api import RecipeRuntimeError, hookimpl

REGEX_SCHEMA = {"type": "object", "required": ["pattern"], "properties": {
    "pattern": {"type": "string", "minLength": 1,
                "description": "a Python regular expression, e.g. \"^<answer>.*</answer>$\""},
    "mode": {"enum": ["search", "fullmatch"], "default": "search",
             "description": "'search': anywhere in the completion; 'fullmatch': the whole "
                            "completion (surrounding whitespace stripped)"},
    "ignore_case": {"type": "boolean", "default": False},
    "match": {"type": "number", "default": 1.0, "description": "the score of a match"},
    "no_match": {"type": "number", "default": 0.0, "description": "the score otherwise"},
}}
LENGTH_SCHEMA = {"type": "object", "required": ["target"], "properties": {
    "target": {"type": "integer", "minimum": 1, "description": "the length to reach"},
    "unit": {"enum": ["words", "characters"], "default": "words"},
}}
REFERENCE = {"type": "string", "minLength": 1, "default": "answer",
             "description": "the row's column holding the reference answer"}
EXACT_SCHEMA = {"type": "object", "properties": {
    "column": REFERENCE,
    "normalize": {"type": "boolean", "default": True,
                  "description": "compare lowercased, with whitespace collapsed and trailing "
                                 "punctuation stripped"},
}}
NUMERIC_SCHEMA = {"type": "object", "properties": {
    "column": REFERENCE,
    "tolerance": {"type": "number", "minimum": 0, "default": 0.0,
                  "description": "the largest difference still scored as a match"},
}}

NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:\.\d+)?")


def completion_text(completion) -> str:
    """The text of a completion: itself, or its last message's content."""
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


def _references(column: str, columns: dict, n: int, name: str) -> list:
    if column not in columns:
        shown = ", ".join(sorted(k for k, v in columns.items() if isinstance(v, list)))
        raise RecipeRuntimeError(f"{name}: the rows have no column '{column}' (they have: "
                                 f"{shown}); set params.column to the reference column")
    return list(columns[column])[:n]


def regex_reward(params, context):
    """``match`` when the pattern matches the completion, else ``no_match``."""
    pattern = re.compile(params["pattern"], re.IGNORECASE if params["ignore_case"] else 0)
    full = params["mode"] == "fullmatch"

    def regex_match(prompts, completions, **kwargs):
        texts = [completion_text(c) for c in completions]
        hits = [pattern.fullmatch(t.strip()) if full else pattern.search(t) for t in texts]
        return [params["match"] if hit else params["no_match"] for hit in hits]

    return regex_match


def length_reward(params, context):
    """1 at the target length, falling linearly to 0 at twice it (or at 0)."""
    target, unit = params["target"], params["unit"]

    def length_target(prompts, completions, **kwargs):
        texts = [completion_text(c) for c in completions]
        sizes = [len(t.split()) if unit == "words" else len(t) for t in texts]
        return [max(0.0, 1.0 - abs(size - target) / target) for size in sizes]

    return length_target


def normalized(text: str) -> str:
    """Lowercased, whitespace collapsed, trailing punctuation stripped."""
    return " ".join(str(text).lower().split()).rstrip(".!?;:,")


def exact_reward(params, context):
    """1 when the completion equals the row's reference, else 0; None without one."""
    column, norm = params["column"], params["normalize"]

    def exact_match(prompts, completions, **columns):
        refs = _references(column, columns, len(completions), "exact_match")
        scores = []
        for completion, ref in zip(completions, refs):
            if ref is None or not str(ref).strip():
                scores.append(None)
                continue
            text, ref = completion_text(completion), str(ref)
            same = normalized(text) == normalized(ref) if norm else text.strip() == ref.strip()
            scores.append(1.0 if same else 0.0)
        return scores

    return exact_match


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (``1,234.5`` read as 1234.5), or None."""
    found = NUMBER.findall(str(text))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric_reward(params, context):
    """1 when the completion's last number is within ``tolerance`` of the reference's, else 0;
    None when the reference holds no number."""
    column, tolerance = params["column"], params["tolerance"]

    def numeric_match(prompts, completions, **columns):
        refs = _references(column, columns, len(completions), "numeric_match")
        scores = []
        for completion, ref in zip(completions, refs):
            expected = ref if isinstance(ref, (int, float)) else last_number(ref or "")
            if expected is None:
                scores.append(None)
                continue
            got = last_number(completion_text(completion))
            scores.append(1.0 if got is not None and abs(got - expected) <= tolerance else 0.0)
        return scores

    return numeric_match


@hookimpl
def fturun_register_rewards(register):
    register("regex_match", regex_reward, REGEX_SCHEMA,
             "params.match (1) when a regular expression matches the completion (a format), "
             "else params.no_match (0)")
    register("length_target", length_reward, LENGTH_SCHEMA,
             "1 at params.target words (or characters), falling linearly to 0 at 0 and at "
             "twice the target")
    register("exact_match", exact_reward, EXACT_SCHEMA,
             "1 when the completion equals the row's reference column (normalized), else 0")
    register("numeric_match", numeric_reward, NUMERIC_SCHEMA,
             "1 when the completion's last number is within params.tolerance of the row's "
             "reference number, else 0")
