"""The ``poly1`` loss: PolyLoss (Leng et al. 2022, "PolyLoss: A Polynomial Expansion Perspective
of Classification Loss Functions", arXiv:2204.12511), Poly-1 form::

    L = CE(logits, y) + epsilon * (1 - p_y)

where ``p_y`` is the softmax probability of the true class. ``epsilon > 0`` keeps pushing on
examples that are already right (helps on large, clean data), ``epsilon < 0`` (down to -1) eases
off. Works for sequence classification (``[batch, classes]``) and token classification
(``[batch, tokens, classes]``); labels of -100 are ignored.
"""

from __future__ import annotations

IGNORE_INDEX = -100


def logits_of(outputs):
    """The logits of a model output: a ModelOutput/dict, an object with ``.logits``, a tuple
    (logits first) or the tensor itself."""
    if isinstance(outputs, dict):
        return outputs["logits"]
    if hasattr(outputs, "logits"):
        return outputs.logits
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    return outputs


def poly1(params, context):
    """``loss(outputs, labels)``: the mean over the labelled items of the batch (0 when there
    are none); fturun scales it for gradient accumulation and several processes."""
    import torch.nn.functional as F

    epsilon = float(params["epsilon"])  # the schema's default (1.0) is filled in

    def loss(outputs, labels):
        logits = logits_of(outputs)
        logits = logits.reshape(-1, logits.shape[-1]).float()
        labels = labels.reshape(-1).to(logits.device)
        valid = labels != IGNORE_INDEX
        target = labels.masked_fill(~valid, 0)
        log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
        per_item = -log_p + epsilon * (1 - log_p.exp())
        return (per_item * valid).sum() / valid.sum().clamp(min=1)

    return loss
