"""accuracy as a local evaluate module (the Hub's evaluate.load("accuracy") is unreachable offline)."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = "accuracy of predicted class ids against reference class ids (no arguments.)"
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: true class ids.
Returns:
    {"accuracy": float}
"""


class Accuracy(evaluate.Metric):
    """accuracy computed with scikit-learn."""

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
        return {"accuracy": float(accuracy_score(references, predictions))}
