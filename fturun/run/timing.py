"""Callbacks that time a run: seconds from process start to the first optimizer step and the
median step time, and the check's per-step timer."""

from __future__ import annotations

import statistics
import time

from ..core.clock import PROCESS_START


def FirstStepClock():  # noqa: N802 - used like a class
    """A callback noting the seconds from process start (:data:`fturun.core.clock.PROCESS_START`)
    to the
    end of the first optimizer step (startup, data preparation and model loading included), and
    the end of every step after it: ``median_step_seconds()`` is the median time from one step's
    end to the next (everything the loop does between them; a step that also evaluates or saves,
    or one slowed by another process, weighs no more than any other), None before two steps."""
    from transformers import TrainerCallback

    class FirstStepClock(TrainerCallback):
        seconds = None

        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            if self.seconds is None:
                self.seconds = time.time() - PROCESS_START
            self.ends.append(time.monotonic())

        def median_step_seconds(self):
            gaps = [b - a for a, b in zip(self.ends, self.ends[1:])]
            return statistics.median(gaps) if gaps else None

    return FirstStepClock()


def CheckProbe():  # noqa: N802 - used like a class
    """The check's callback: times each optimizer step and keeps the Trainer from evaluating or
    saving during the check's steps (the check evaluates one batch itself).
    ``step_seconds()`` is the last step's time (the first one pays for warm-up), or None."""
    from transformers import TrainerCallback

    class CheckProbe(TrainerCallback):
        def __init__(self):
            self.durations = []
            self._start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if self._start is not None:
                self.durations.append(time.monotonic() - self._start)
                self._start = None
            control.should_evaluate = False
            control.should_save = False
            return control

        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_evaluate = False
            control.should_save = False
            return control

        def step_seconds(self):
            return self.durations[-1] if self.durations else None

    return CheckProbe()
