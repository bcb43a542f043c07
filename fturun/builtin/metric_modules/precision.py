"""precision as a local evaluate module (the Hub's evaluate.load("precision") is unreachable offline)."""

import datasets
import evaluate
from sklearn.metrics import precision_score

_DESCRIPTION = "precision of predicted class ids against reference class ids (average: 'macro' (default, every class counts the same), 'micro', 'weighted' or 'binary' (two classes).)"
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: true class ids.
Returns:
    {"precision": float}
"""


class Precision(evaluate.Metric):
    """precision computed with scikit-learn."""

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
        return {"precision": float(precision_score(references, predictions, average=average, zero_division=0))}
