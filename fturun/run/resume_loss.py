"""A resumed run's final ``train_loss``: the mean over all its steps, as an uninterrupted run's
is (the Trainer averages only the steps after the resume). The checkpoint's marker holds the
sum of the losses before it (:func:`~fturun.run.checkpoints.CompleteMarker`)."""

from __future__ import annotations

import os

from ..core.io import read_json
from .checkpoints import COMPLETE_MARKER, TRAINER_STATE


def checkpoint_loss_sum(checkpoint: str) -> float | None:
    """The sum of the step losses up to ``checkpoint``: its marker's ``loss_sum``; else from its
    log history when its last logged loss is at its step (each logged loss is the mean over
    the steps since the one before); else None."""
    marker = read_json(os.path.join(checkpoint, COMPLETE_MARKER), {}) or {}
    if isinstance(marker.get("loss_sum"), (int, float)):
        return float(marker["loss_sum"])
    state = read_json(os.path.join(checkpoint, TRAINER_STATE), {}) or {}
    total, last = 0.0, 0
    for entry in state.get("log_history") or []:
        if "loss" in entry and isinstance(entry.get("step"), int):
            total += float(entry["loss"]) * (entry["step"] - last)
            last = entry["step"]
    return total if last and last == state.get("global_step") else None


def ResumedTrainLoss(checkpoint: str):  # noqa: N802 - used like a class
    """A callback making a resumed run's final ``train_loss`` the mean over all its steps, as
    an uninterrupted run's is (the Trainer averages only the steps after the resume): it
    rewrites the value in the final log before the callbacks after it (the tracker) see it.
    None when the checkpoint does not say its losses."""
    from transformers import TrainerCallback

    loss_sum = checkpoint_loss_sum(checkpoint)
    start = int((read_json(os.path.join(checkpoint, TRAINER_STATE), {}) or {})
                .get("global_step") or 0)
    if loss_sum is None or start <= 0:
        return None

    class ResumedTrainLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "train_loss" not in logs or state.global_step <= start:
                return
            after = logs["train_loss"] * (state.global_step - start)
            logs["train_loss"] = (loss_sum + after) / state.global_step
            last = state.log_history[-1] if state.log_history else {}
            if "train_loss" in last:
                last["train_loss"] = logs["train_loss"]

    return ResumedTrainLoss()
