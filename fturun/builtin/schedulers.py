"""Built-in learning-rate schedulers: every ``lr_scheduler_type`` of the installed
TrainingArguments, with the kwargs each one takes, plus warmup (steps, or a fraction of training
when below 1)."""

from __future__ import annotations

from fturun.api import hookimpl, training_schema

RATE = {"type": "number", "minimum": 0, "maximum": 1}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
STEPS = {"type": "integer", "minimum": 0}
KWARGS = {
    "cosine": {"num_cycles": {"type": "number", "exclusiveMinimum": 0, "default": 0.5}},
    "cosine_with_restarts": {"num_cycles": {"type": "integer", "minimum": 1, "default": 1}},
    "polynomial": {"lr_end": {"type": "number", "minimum": 0, "default": 1e-7},
                   "power": {"type": "number", "exclusiveMinimum": 0, "default": 1.0}},
    "inverse_sqrt": {"timescale": {"type": "integer", "minimum": 1}},
    "reduce_lr_on_plateau": {"mode": {"enum": ["min", "max"]}, "factor": RATE,
                             "patience": STEPS, "threshold": {"type": "number", "minimum": 0},
                             "min_lr": {"type": "number", "minimum": 0}},
    "cosine_with_min_lr": {"num_cycles": POSITIVE, "min_lr": {"type": "number", "minimum": 0},
                           "min_lr_rate": RATE},
    "cosine_warmup_with_min_lr": {"num_cycles": POSITIVE,
                                  "min_lr": {"type": "number", "minimum": 0},
                                  "min_lr_rate": RATE, "warmup_lr_rate": RATE},
    "warmup_stable_decay": {"num_stable_steps": STEPS, "num_decay_steps": STEPS,
                            "min_lr_ratio": RATE, "num_cycles": POSITIVE,
                            "warmup_type": {"enum": ["linear", "cosine", "1-sqrt"]},
                            "decay_type": {"enum": ["linear", "cosine", "1-sqrt"]}},
}
WARMUP = {"type": "number", "minimum": 0,
          "description": "warmup steps, or a fraction of all training steps when below 1 "
                         "(sets training.warmup_steps)"}


def _factory(name):
    def build(params, context):
        """Settings for TrainingArguments: ``lr_scheduler_type``, its kwargs and warmup."""
        kwargs = {k: v for k, v in params.items() if k != "warmup"}
        args = {"lr_scheduler_type": name}
        if kwargs:
            args["lr_scheduler_kwargs"] = kwargs
        if "warmup" in params:
            args["warmup_steps"] = params["warmup"]
        return {"training_args": args}

    return build


@hookimpl
def fturun_register_schedulers(register):
    """The built-in schedulers."""
    for name in training_schema()["properties"]["lr_scheduler_type"]["enum"]:
        schema = {"type": "object", "properties": {"warmup": WARMUP, **KWARGS.get(name, {})}}
        register(name, _factory(name), schema, f"lr_scheduler_type='{name}'")
