"""f1 as a local evaluate module (the Hub's evaluate.load("f1") is unreachable offline)."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = "f1 of predicted class ids against reference class ids (average: 'macro' (default, every class counts the same), 'micro', 'weighted' or 'binary' (two classes).)"
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: true class ids.
Returns:
    {"f1": float}
"""


class F1(evaluate.Metric):
    """f1 computed with scikit-learn."""

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
        return {"f1": float(f1_score(references, predictions, average=average, zero_division=0))}
