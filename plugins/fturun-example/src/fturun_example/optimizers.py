"""The ``lion`` optimizer factory (the optimizer itself is in
:mod:`fturun_example.lion_optimizer`)."""

from __future__ import annotations

#: TrainingArguments' default learning rate, used when the recipe sets none
DEFAULT_LR = 5e-5


def lion(params, context):
    """``{"optimizer_cls_and_kwargs": (Lion, kwargs)}`` for the Trainer; ``lr`` defaults to
    ``training.learning_rate``, ``weight_decay`` to ``training.weight_decay``."""
    from .lion_optimizer import Lion

    training = context.training_args or {}
    kwargs = {
        "lr": params.get("lr", training.get("learning_rate", DEFAULT_LR)),
        "betas": tuple(params.get("betas", (0.9, 0.99))),
    }
    if "weight_decay" in params:
        # the Trainer's param groups carry training.weight_decay; the recipe's value wins
        kwargs["weight_decay"] = params["weight_decay"]
        kwargs["override_group_weight_decay"] = True
    return {"optimizer_cls_and_kwargs": (Lion, kwargs)}
