"""Built-in optimizers: every ``optim`` name of the installed TrainingArguments (AdamW, Adafactor,
8-bit Adam, ...), plus torch.optim classes (``torch_sgd``, ``torch_adamw``, ...) with their params.
The names are read from fturun's committed TrainingArguments schema, so listing them imports
nothing heavy."""

from __future__ import annotations

from fturun.api import BNB_OPTIMIZERS, hookimpl, training_schema

OPTIM_ARGS_SCHEMA = {"type": "object", "properties": {
    "optim_args": {"type": "object",
                   "additionalProperties": {"type": ["number", "string", "boolean"]},
                   "description": "extra optimizer arguments, e.g. {\"scale_parameter\": false}"}}}

BETAS = {"type": "array", "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
         "minItems": 2, "maxItems": 2}
NONNEG = {"type": "number", "minimum": 0}
TORCH_OPTIMIZERS = {
    "torch_sgd": ("SGD", "Stochastic gradient descent (momentum, Nesterov)",
                  {"momentum": NONNEG, "dampening": NONNEG, "nesterov": {"type": "boolean"}}),
    "torch_adam": ("Adam", "torch.optim.Adam", {"betas": BETAS, "eps": NONNEG,
                                                "amsgrad": {"type": "boolean"}}),
    "torch_adamw": ("AdamW", "torch.optim.AdamW", {"betas": BETAS, "eps": NONNEG,
                                                   "amsgrad": {"type": "boolean"}}),
    "torch_rmsprop": ("RMSprop", "torch.optim.RMSprop",
                      {"alpha": NONNEG, "eps": NONNEG, "momentum": NONNEG,
                       "centered": {"type": "boolean"}}),
    "torch_adagrad": ("Adagrad", "torch.optim.Adagrad", {"lr_decay": NONNEG, "eps": NONNEG}),
}


def needs_bitsandbytes(name: str) -> bool:
    """Whether an ``optim`` name runs on bitsandbytes (8-bit/paged optimizers: CUDA only)."""
    return name in BNB_OPTIMIZERS


def _optim_factory(name):
    def build(params, context):
        """Settings for TrainingArguments: ``optim`` and ``optim_args`` (what the optimizer
        needs of the machine is checked before the build, by :mod:`fturun.engine.hardware`)."""
        args = {"optim": name}
        extra = params.get("optim_args")
        if extra:
            args["optim_args"] = ",".join(f"{k}={v}" for k, v in extra.items())
        return {"training_args": args}

    return build


def _torch_factory(class_name):
    def build(params, context):
        """``optimizer_cls_and_kwargs`` for the Trainer; lr and weight decay from training."""
        import torch

        kwargs = dict(params)
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        # the Trainer's parameter groups carry no lr: the optimizer's default would apply
        kwargs.setdefault("lr", context.training_arg("learning_rate"))
        result = {"optimizer_cls_and_kwargs": (getattr(torch.optim, class_name), kwargs)}
        if "weight_decay" in kwargs:
            # the Trainer's parameter groups set weight_decay (from training.weight_decay, 0 for
            # biases and norms), which would silently override it as an optimizer kwarg
            result["training_args"] = {"weight_decay": kwargs.pop("weight_decay")}
        return result

    return build


@hookimpl
def fturun_register_optimizers(register):
    """The built-in optimizers."""
    for name in training_schema()["properties"]["optim"]["enum"]:
        note = " (bitsandbytes, CUDA)" if needs_bitsandbytes(name) else ""
        register(name, _optim_factory(name), OPTIM_ARGS_SCHEMA,
                 f"TrainingArguments optim='{name}'{note}")
    for name, (class_name, description, properties) in TORCH_OPTIMIZERS.items():
        schema = {"type": "object", "properties": {
            "lr": {"type": "number", "exclusiveMinimum": 0,
                   "description": "default: training.learning_rate"},
            "weight_decay": NONNEG, **properties}}
        register(name, _torch_factory(class_name), schema, description)
