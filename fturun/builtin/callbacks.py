"""Built-in Trainer callbacks: early stopping and a wall-clock time limit."""

from __future__ import annotations

from fturun.api import hookimpl

EARLY_STOPPING_SCHEMA = {"type": "object", "properties": {
    "patience": {"type": "integer", "minimum": 1, "default": 3,
                 "description": "evaluations without improvement before stopping"},
    "threshold": {"type": "number", "minimum": 0, "default": 0.0,
                  "description": "minimum improvement that counts"}}}
TIME_LIMIT_SCHEMA = {"type": "object", "required": ["minutes"], "properties": {
    "minutes": {"type": "number", "exclusiveMinimum": 0,
                "description": "stop (saving a checkpoint) after this much training time"}}}


def early_stopping(params, context):
    """Stop when ``metric_for_best_model`` stops improving (needs load_best_model_at_end)."""
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=params["patience"],
                                 early_stopping_threshold=params["threshold"])


def time_limit(params, context):
    """Stop training cleanly, with a final save, once the time budget is spent."""
    import time

    from transformers import TrainerCallback

    budget = params["minutes"] * 60.0

    class TimeLimitCallback(TrainerCallback):
        start = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if self.start is not None and time.monotonic() - self.start > budget:
                context.log(f"time limit of {params['minutes']} min reached at step "
                            f"{state.global_step}: stopping")
                control.should_training_stop = True
                control.should_save = True
            return control

    return TimeLimitCallback()


@hookimpl
def fturun_register_callbacks(register):
    """The built-in callbacks."""
    register("early_stopping", early_stopping, EARLY_STOPPING_SCHEMA,
             "Stop when the best-model metric stops improving (patience evaluations)")
    register("time_limit", time_limit, TIME_LIMIT_SCHEMA,
             "Stop training after a wall-clock budget, saving a checkpoint")
