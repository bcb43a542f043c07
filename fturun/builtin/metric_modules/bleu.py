"""Corpus BLEU as a local evaluate module, pure Python (the Hub's evaluate.load("bleu") is
unreachable offline).

BLEU (Papineni et al., 2002) over the whole corpus: clipped n-gram matches and candidate n-grams
are summed over all predictions for n = 1..max_order, the score is the geometric mean of the
n-gram precisions times the brevity penalty exp(1 - r/c) when the predictions (c tokens) are
shorter than the references (r tokens, the shortest reference of each prediction). Text is
tokenized like sacrebleu's "13a" tokenizer (punctuation split off, case kept). With
``smooth=True`` every precision is (matches + 1) / (candidates + 1) (Lin and Och, 2004), so
short texts do not score 0 for lack of a 4-gram match."""

import collections
import math
import re

import datasets
import evaluate

_DESCRIPTION = "Corpus-level BLEU with 13a tokenization; score in [0, 1]."
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated texts.
    references: one reference text per prediction, or a list of references per prediction.
    max_order: the longest n-gram counted (default 4).
    smooth: add-one smoothing of the n-gram precisions (default False).
Returns:
    {"bleu": float, "bleu_brevity_penalty": float, "bleu_length_ratio": float}
"""


def tokenize_13a(line):
    """sacrebleu's 13a tokenization (the mteval-v13a.pl rules)."""
    line = str(line).replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&")
        line = line.replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    line = re.sub(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 ", line)
    line = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", line)
    line = re.sub(r"([\.,])([^0-9])", r" \1 \2", line)
    line = re.sub(r"([0-9])(-)", r"\1 \2 ", line)
    return line.split()


def ngram_counts(tokens, max_order):
    counts = collections.Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i:i + n])] += 1
    return counts


def corpus_bleu(predictions, references, max_order=4, smooth=False):
    """``{"bleu", "bleu_brevity_penalty", "bleu_length_ratio"}`` for tokenized predictions and,
    per prediction, a list of tokenized references."""
    matches = [0] * max_order
    possible = [0] * max_order
    prediction_length = reference_length = 0
    for prediction, refs in zip(predictions, references):
        prediction_length += len(prediction)
        reference_length += min(len(r) for r in refs)
        best = collections.Counter()
        for ref in refs:
            best |= ngram_counts(ref, max_order)
        overlap = ngram_counts(prediction, max_order) & best
        for ngram, count in overlap.items():
            matches[len(ngram) - 1] += count
        for n in range(1, max_order + 1):
            possible[n - 1] += max(len(prediction) - n + 1, 0)
    precisions = []
    for n in range(max_order):
        if smooth:
            precisions.append((matches[n] + 1.0) / (possible[n] + 1.0))
        else:
            precisions.append(matches[n] / possible[n] if possible[n] else 0.0)
    if min(precisions) > 0:
        geometric_mean = math.exp(sum(math.log(p) for p in precisions) / max_order)
    else:
        geometric_mean = 0.0
    ratio = prediction_length / reference_length if reference_length else 0.0
    if ratio > 1.0 or reference_length == 0:
        penalty = 1.0
    elif ratio == 0.0:
        penalty = 0.0
    else:
        penalty = math.exp(1 - 1.0 / ratio)
    return {"bleu": float(geometric_mean * penalty), "bleu_brevity_penalty": float(penalty),
            "bleu_length_ratio": float(ratio)}


class Bleu(evaluate.Metric):
    """Corpus BLEU computed in pure Python."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Papineni et al., BLEU: a Method for Automatic Evaluation of Machine "
                     "Translation (2002)",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, max_order=4, smooth=False):
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        return corpus_bleu([tokenize_13a(p) for p in predictions],
                           [[tokenize_13a(r) for r in rs] for rs in refs],
                           max_order=max_order, smooth=smooth)
