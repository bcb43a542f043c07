"""accuracy, precision, recall, f1 and matthews_correlation as one local evaluate module: the
metric is the config name, evaluate.load(this_file, "f1") (the Hub's evaluate.load("accuracy")
is unreachable offline)."""

import datasets
import evaluate
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
)

#: metrics that combine per-class scores ("average": macro by default)
AVERAGED = {"precision": precision_score, "recall": recall_score, "f1": f1_score}
PLAIN = {"accuracy": accuracy_score, "matthews_correlation": matthews_corrcoef}

_DESCRIPTION = (
    "a classification metric of predicted class ids against reference class ids, chosen by the "
    "config name: accuracy, precision, recall, f1 (argument average: 'macro' (default, every "
    "class counts the same), 'micro', 'weighted' or 'binary' (two classes)) or "
    "matthews_correlation."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: true class ids.
    average: precision, recall and f1 only; 'macro' by default.
Returns:
    {CONFIG_NAME: float}
"""


class Classification(evaluate.Metric):
    """The classification metrics, computed with scikit-learn."""

    def _info(self):
        if self.config_name not in AVERAGED and self.config_name not in PLAIN:
            raise KeyError(f"unknown classification metric '{self.config_name}'; one of "
                           f"{', '.join(sorted([*AVERAGED, *PLAIN]))}")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="macro"):
        name = self.config_name
        if name in AVERAGED:
            value = AVERAGED[name](references, predictions, average=average, zero_division=0)
        else:
            value = PLAIN[name](references, predictions)
        return {name: float(value)}
