"""What a built model is: a peft model or not, its parameter counts, a one-line description.
Works on any torch module without importing peft when it is not loaded."""

from __future__ import annotations

import sys


def is_peft_model(model) -> bool:
    """Whether ``model`` is a peft model (without importing peft when it is not loaded)."""
    peft = sys.modules.get("peft")
    return bool(peft) and isinstance(model, peft.PeftModel)


def count_parameters(model) -> tuple:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def model_description(model) -> str:
    """The model class, and the base model class under a peft adapter."""
    if is_peft_model(model):
        return f"{type(model).__name__} over {type(model.get_base_model()).__name__}"
    return type(model).__name__
