"""What the tasks read from a Trainer's predictions."""

from __future__ import annotations


def first_output(predictions):
    """The model's first output (the logits, or generated ids) of ``predictions``, which the
    Trainer gives as a tuple when the model returns several outputs."""
    return predictions[0] if isinstance(predictions, (tuple, list)) else predictions
