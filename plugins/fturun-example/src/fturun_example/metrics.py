"""The ``per_class_f1`` metric: the F1 score of every label, so that a macro average does not hide
the class the model gets wrong."""

from __future__ import annotations

import re

IGNORE_INDEX = -100


def metric_key(label) -> str:
    """``f1_<label>`` with characters that metric stores dislike replaced by ``_``."""
    return "f1_" + re.sub(r"[^\w.\-]+", "_", str(label)).strip("_")


def f1_per_class(predictions, references, n_labels: int) -> list:
    """F1 of each class id ``0..n_labels-1``: 2TP / (2TP + FP + FN), 0.0 for a class that is
    neither predicted nor present. References of -100 (padding, sub-tokens) are skipped."""
    import numpy as np

    predictions = np.asarray(predictions).reshape(-1)
    references = np.asarray(references).reshape(-1)
    keep = references != IGNORE_INDEX
    predictions, references = predictions[keep], references[keep]
    scores = []
    for c in range(n_labels):
        tp = int(np.sum((predictions == c) & (references == c)))
        fp = int(np.sum((predictions == c) & (references != c)))
        fn = int(np.sum((predictions != c) & (references == c)))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else 0.0)
    return scores


def per_class_f1(params, context):
    """``metric_fn(predictions, references) -> {"f1_<label>": float, ...}`` over class ids, one
    key per label of ``context.label_names`` (class ids when the names are unknown)."""
    import numpy as np

    names = list(context.label_names or [])

    def metric_fn(predictions, references):
        labels = names
        if not labels:
            refs = np.asarray(references).reshape(-1)
            seen = np.concatenate([np.asarray(predictions).reshape(-1), refs[refs >= 0]])
            labels = [str(i) for i in range(int(seen.max()) + 1 if seen.size else 0)]
        scores = f1_per_class(predictions, references, len(labels))
        return {metric_key(label): float(score) for label, score in zip(labels, scores)}

    return metric_fn
