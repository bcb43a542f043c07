"""recall as a local evaluate module (the Hub's evaluate.load("recall") is unreachable offline)."""

import datasets
import evaluate
from sklearn.metrics import recall_score

_DESCRIPTION = "recall of predicted class ids against reference class ids (average: 'macro' (default, every class counts the same), 'micro', 'weighted' or 'binary' (two classes).)"
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: true class ids.
Returns:
    {"recall": float}
"""


class Recall(evaluate.Metric):
    """recall computed with scikit-learn."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="macro"):
        return {"recall": float(recall_score(references, predictions, average=average, zero_division=0))}
