"""The graceful stop: the first Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a
checkpoint and stops training (every process of a launch at the same step); a second one exits
at once."""

from __future__ import annotations

import os
import signal
import sys
import threading

from .dist import StopVote
from .errors import Interrupted


class GracefulStop:
    """While active, the first SIGINT/SIGTERM asks the Trainer (through :meth:`callback`) to
    save a checkpoint and stop at the end of the current step; a second one exits at once."""

    def __init__(self, advice: str = "a checkpoint was saved in the output dir; continue with "
                                        "--resume"):
        self.requested = None
        self.advice = advice  # what the Interrupted message tells the user to do next
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
        print("\ninterrupt: saving a checkpoint at the end of this step (again to exit now)",
              file=sys.stderr, flush=True)

    def exception(self):
        """The :class:`Interrupted` to raise once the Trainer has stopped."""
        name = signal.Signals(self.requested).name
        return Interrupted(f"stopped by {name}: {self.advice}", 128 + self.requested)

    def callback(self):
        """A TrainerCallback that turns a requested stop into save + stop."""
        from transformers import TrainerCallback

        stop = self
        vote = StopVote()  # several processes stop at the same step, or none does

        class GracefulStopCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if vote.any(stop.requested is not None) and stop.requested is None:
                    stop.requested = signal.SIGTERM  # another process was signalled
                if stop.requested is not None:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return GracefulStopCallback()
