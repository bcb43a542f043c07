"""The Trainer's progress bars for a console that is not a terminal (a log file, CI): the
training bar stays (progress on long work), but the evaluation bar, drawn below it with cursor
movements (``\\x1b[A``), would leave a finished bar and escape codes in the file at every
evaluation; there the evaluation's result line says all it would."""

from __future__ import annotations

import os
import sys


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (False for a closed or file-less stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fit_progress_to_console(trainer, stream=None) -> bool:
    """Replace ``trainer``'s progress callback with one without the evaluation bar when
    ``stream`` (default stderr) is not a terminal. Returns whether it did."""
    from transformers.trainer_callback import ProgressCallback

    if is_terminal(stream if stream is not None else sys.stderr):
        return False
    if not any(type(cb) is ProgressCallback for cb in trainer.callback_handler.callbacks):
        return False  # disable_tqdm, or a progress callback of the recipe's own

    class NoEvalBar(ProgressCallback):
        """The Trainer's progress: the training bar and the logged values, no eval bar."""

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            return None

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(NoEvalBar())
    return True


def library_bars_off() -> None:
    """transformers' own progress bars ("Loading weights" at every load, "Writing model
    shards" at every checkpoint) finish in a blink and say nothing to act on: off unless the
    console is verbose (``-v`` exports ``FTURUN_VERBOSE=1``). Download bars are the Hub's own
    and stay."""
    if os.environ.get("FTURUN_VERBOSE", "") in ("", "0"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
