"""The ``lion`` optimizer factory (the optimizer itself is in
:mod:`fturun_example.lion_optimizer`)."""

from __future__ import annotations


def lion(params, context):
    """``{"optimizer_cls_and_kwargs": (Lion, kwargs)}`` for the Trainer; ``lr`` defaults to
    ``training.learning_rate``, ``weight_decay`` to ``training.weight_decay``."""
    from .lion_optimizer import Lion

    # the Trainer's parameter groups carry no lr: it goes into the kwargs
    kwargs = {
        "lr": params.get("lr", context.training_arg("learning_rate")),
        "betas": tuple(params["betas"]),  # the schema's default is filled in
    }
    if "weight_decay" in params:
        # the Trainer's param groups carry training.weight_decay; the recipe's value wins
        kwargs["weight_decay"] = params["weight_decay"]
        kwargs["override_group_weight_decay"] = True
    return {"optimizer_cls_and_kwargs": (Lion, kwargs)}
