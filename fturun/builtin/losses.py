"""Built-in training losses: cross entropy (with label smoothing), class-weighted cross entropy,
and focal loss. They work for sequence classification (logits ``[batch, classes]``) and token
classification (``[batch, tokens, classes]``, -100 ignored). Each returns the plain mean over
the batch's labelled items, as the loss contract asks (``fturun_register_losses``): fturun
scales it for gradient accumulation and several processes."""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, hookimpl

WEIGHTS = {
    "description": "one weight per label (in label id order), or \"balanced\" for "
                   "n_samples / (n_classes * count) from the train data",
    "anyOf": [{"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2},
              {"const": "balanced"}],
}
CE_SCHEMA = {"type": "object", "properties": {
    "label_smoothing": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0}}}
WEIGHTED_SCHEMA = {"type": "object", "required": ["weights"], "properties": {
    "weights": WEIGHTS,
    "label_smoothing": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0}}}
FOCAL_SCHEMA = {"type": "object", "properties": {
    "gamma": {"type": "number", "minimum": 0, "default": 2.0,
              "description": "focusing strength; 0 is plain cross entropy"},
    "weights": WEIGHTS}}


def _flatten(outputs, labels):
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    return logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)


def _reduce(per_item, labels):
    """The mean over the labelled items (0 when there are none, not NaN)."""
    valid = labels != -100
    return per_item[valid].sum() / valid.sum().clamp(min=1)


def class_weights(spec, context):
    """A weight tensor from a list or from label frequencies in the train data ("balanced")."""
    import torch

    n_labels = len(context.label_names or [])
    if spec == "balanced":
        if context.train_dataset is None or not n_labels:
            raise RecipeRuntimeError("loss.params.weights=\"balanced\" needs labelled train data")
        counts = torch.bincount(torch.tensor(context.train_dataset["labels"]),
                                minlength=n_labels).float()
        weights = counts.sum() / (n_labels * counts.clamp(min=1))
    else:
        if n_labels and len(spec) != n_labels:
            raise RecipeRuntimeError(f"loss.params.weights has {len(spec)} values but the data "
                                     f"has {n_labels} labels ({', '.join(context.label_names)})")
        weights = torch.tensor(spec, dtype=torch.float)
    context.log("class weights: " + ", ".join(
        f"{name}={w:.3f}" for name, w in zip(context.label_names or [], weights.tolist())))
    return weights


def cross_entropy(params, context):
    """Cross entropy with optional label smoothing."""
    return _weighted_ce(None, params["label_smoothing"])  # the schema's default filled in


def weighted_cross_entropy(params, context):
    """Cross entropy with a weight per class (for imbalanced labels)."""
    return _weighted_ce(class_weights(params["weights"], context), params["label_smoothing"])


def _weighted_ce(weights, smoothing):
    import torch.nn.functional as F

    def loss(outputs, labels):
        logits, flat = _flatten(outputs, labels)
        w = weights.to(logits.device) if weights is not None else None
        per_item = F.cross_entropy(logits, flat.clamp(min=0), weight=w, reduction="none",
                                   label_smoothing=smoothing)
        if w is not None:
            # weighted mean as torch defines it: divide by the weights of the items, not their count
            item_w = w[flat.clamp(min=0)] * (flat != -100)
            scale = item_w.sum() / (flat != -100).sum().clamp(min=1)
            return _reduce(per_item, flat) / scale.clamp(min=1e-12)
        return _reduce(per_item, flat)

    return loss


def focal(params, context):
    """Focal loss (Lin et al. 2017): down-weights easy examples by (1 - p)^gamma."""
    import torch.nn.functional as F

    gamma = params["gamma"]
    weights = class_weights(params["weights"], context) if "weights" in params else None

    def loss(outputs, labels):
        logits, flat = _flatten(outputs, labels)
        target = flat.clamp(min=0)
        log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
        per_item = -((1 - log_p.exp()) ** gamma) * log_p
        if weights is not None:
            per_item = per_item * weights.to(logits.device)[target]
        return _reduce(per_item, flat)

    return loss


@hookimpl
def fturun_register_losses(register):
    """The built-in losses."""
    register("cross_entropy", cross_entropy, CE_SCHEMA, "Cross entropy, optional label smoothing")
    register("weighted_cross_entropy", weighted_cross_entropy, WEIGHTED_SCHEMA,
             "Class-weighted cross entropy (weights per label, or \"balanced\")")
    register("focal", focal, FOCAL_SCHEMA, "Focal loss for imbalanced or hard examples")
