"""The graceful stop: during training, the first Ctrl-C (SIGINT) or SIGTERM finishes the current
step, saves a checkpoint and stops training (every process of a launch at the same step); a
second one exits at once. Outside training (loading data and model before it, evaluating and
saving after it) there is no step to finish: the first signal stops the run at once, and on the
other ranks of a launch silently (rank 0 reports)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from ..core.dist import StopVote, is_main_process
from ..core.errors import Interrupted


class GracefulStop:
    """While active, the first SIGINT/SIGTERM asks the Trainer (through :meth:`callback`) to
    save a checkpoint and stop at the end of the current step; a second one exits at once."""

    def __init__(self, advice: str = "a checkpoint was saved in the output dir; continue with "
                                        "--resume"):
        self.requested = None
        self.advice = advice  # what the Interrupted message tells the user to do next
        self.training = False  # between the Trainer's on_train_begin and on_train_end
        self.trained = False  # training has ended
        self.during_training = True  # whether the requested stop came during training
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        if self.requested is not None:
            print("\nsecond interrupt: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.requested = signum
        self.during_training = self.training
        if not self.training:  # no step to finish, no checkpoint to save: stop now
            if not is_main_process():
                os._exit(128 + signum)  # rank 0 says why; this rank would only repeat it
            raise self.exception()
        print("\ninterrupt: saving a checkpoint at the end of this step (again to exit now)",
              file=sys.stderr, flush=True)

    def exception(self):
        """The :class:`Interrupted` to raise for the requested stop (once the Trainer has
        stopped, or at once outside training)."""
        name = signal.Signals(self.requested).name
        if self.during_training:
            advice = self.advice
        elif self.trained:
            advice = ("training had ended; the last checkpoint in the output dir holds the "
                      "trained model")
        else:
            advice = "training had not started, nothing was saved; run the command again"
        return Interrupted(f"stopped by {name}: {advice}", 128 + self.requested)

    def callback(self):
        """A TrainerCallback that turns a requested stop into save + stop."""
        from transformers import TrainerCallback

        stop = self
        vote = StopVote()  # several processes stop at the same step, or none does

        class GracefulStopCallback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                stop.training, stop.trained = True, False
                if stop.requested is not None:  # a signal while the checkpoint was loading
                    control.should_training_stop = True

            def on_train_end(self, args, state, control, **kwargs):
                stop.training, stop.trained = False, True

            def on_step_end(self, args, state, control, **kwargs):
                if vote.any(stop.requested is not None) and stop.requested is None:
                    stop.requested = signal.SIGTERM  # another process was signalled
                if stop.requested is not None:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return GracefulStopCallback()
