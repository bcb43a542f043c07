"""Exact match as a local evaluate module, pure Python (the Hub's evaluate.load("exact_match") is
unreachable offline).

The share of predictions equal to their reference after normalising both:

- ``"words"`` (the default): lowercase, and every run of characters other than letters and
  digits separates words; the word lists must be equal. So ``"Hello, world!"`` matches
  ``"hello world"`` and a word-piece tokenizer's ``"don ' t"`` matches ``"don't"``, as generated
  text decoded by a tokenizer is spaced differently from the reference;
- ``"whitespace"``: leading and trailing whitespace dropped and inner runs of whitespace made one
  space; case and punctuation count;
- ``"none"``: the strings as they are.

A prediction and a reference that normalise to nothing (both empty) match."""

import re

import datasets
import evaluate

_DESCRIPTION = "The fraction of predictions equal to their reference after normalisation."
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    normalize: "words" (default: lowercase words of letters and digits), "whitespace" or "none".
Returns:
    {"exact_match": float} in [0, 1]
"""

NORMALIZATIONS = ("words", "whitespace", "none")


def normalized(text, normalize="words"):
    """``text`` as it is compared under ``normalize`` (see the module docstring)."""
    text = "" if text is None else str(text)
    if normalize == "words":
        return " ".join(re.findall(r"[^\W_]+", text.lower()))
    if normalize == "whitespace":
        return " ".join(text.split())
    if normalize == "none":
        return text
    raise ValueError(f"unknown normalize {normalize!r}: use one of {', '.join(NORMALIZATIONS)}")


class ExactMatch(evaluate.Metric):
    """Exact match computed in pure Python."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, normalize="words"):
        pairs = list(zip(predictions, references))
        if not pairs:
            return {"exact_match": 0.0}
        matches = sum(normalized(p, normalize) == normalized(r, normalize) for p, r in pairs)
        return {"exact_match": float(matches / len(pairs))}
