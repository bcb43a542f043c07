"""ROUGE-1, ROUGE-2 and ROUGE-L as a local evaluate module, pure Python (the Hub's
evaluate.load("rouge") is unreachable offline and needs the rouge_score package).

Tokenization follows rouge_score's default: lowercase, every run of characters other than a-z
and 0-9 is a separator, no stemming. Each score is the F-measure of one prediction against its
reference, averaged over the pairs (a prediction or reference without tokens scores 0)."""

import collections
import re

import datasets
import evaluate

_DESCRIPTION = ("ROUGE-N (n-gram overlap) and ROUGE-L (longest common subsequence) F-measures, "
                "averaged over prediction/reference pairs.")
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    rouge_types: any of "rouge1", "rouge2", ... "rouge9" and "rougeL"
        (default: rouge1, rouge2, rougeL).
Returns:
    {"rouge1": float, "rouge2": float, "rougeL": float} in [0, 1]
"""

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL")


def tokenize(text):
    """rouge_score's default tokenizer: lowercase words of a-z and 0-9."""
    return re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split()


def ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def f_measure(matches, predicted, reference):
    if matches == 0 or predicted == 0 or reference == 0:
        return 0.0
    precision = matches / predicted
    recall = matches / reference
    return 2 * precision * recall / (precision + recall)


def rouge_n(prediction, reference, n):
    pred, ref = ngrams(prediction, n), ngrams(reference, n)
    matches = sum((pred & ref).values())
    return f_measure(matches, sum(pred.values()), sum(ref.values()))


def lcs_length(a, b):
    """Length of the longest common subsequence of two token lists."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction, reference):
    return f_measure(lcs_length(prediction, reference), len(prediction), len(reference))


def score(prediction, reference, rouge_type):
    if rouge_type == "rougeL":
        return rouge_l(prediction, reference)
    match = re.fullmatch(r"rouge([1-9])", rouge_type)
    if not match:
        raise ValueError(f"unknown rouge type {rouge_type!r}: use rouge1..rouge9 or rougeL")
    return rouge_n(prediction, reference, int(match.group(1)))


class Rouge(evaluate.Metric):
    """ROUGE computed in pure Python."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries (2004)",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, rouge_types=DEFAULT_TYPES):
        results = {}
        pairs = [(tokenize(p), tokenize(r)) for p, r in zip(predictions, references)]
        for rouge_type in rouge_types:
            scores = [score(p, r, rouge_type) for p, r in pairs]
            results[rouge_type] = float(sum(scores) / len(scores)) if scores else 0.0
        return results
