"""matthews_correlation as a local evaluate module (the Hub's evaluate.load("matthews_correlation") is unreachable offline)."""

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef

_DESCRIPTION = "matthews_correlation of predicted class ids against reference class ids (no arguments.)"
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: true class ids.
Returns:
    {"matthews_correlation": float}
"""


class MatthewsCorrelation(evaluate.Metric):
    """matthews_correlation computed with scikit-learn."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
