"""How a run ends: the MLflow status its outcome gives, and the failures that become advice for
people (CUDA out of memory -> what to change; a full disk, a read-only folder -> one paragraph,
:func:`~fturun.core.errors.environment_fault`). Used by every run, check and search trial."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from ..core.errors import FturunError, Interrupted, RecipeRuntimeError, environment_fault

OOM_ADVICE = (
    "CUDA ran out of memory. Try, in the recipe's training section: a smaller "
    "per_device_train_batch_size (and per_device_eval_batch_size) with a larger "
    "gradient_accumulation_steps to keep the effective batch size, "
    "\"gradient_checkpointing\": true, or a smaller data.max_length"
)



@contextmanager
def oom_as_advice():
    """A CUDA out-of-memory error becomes a :class:`RecipeRuntimeError` saying what to change."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise RecipeRuntimeError(OOM_ADVICE) from None


def as_advice(exc: BaseException, output_dir: str | None = None,
              doing: str = "") -> FturunError | None:
    """The error for people that ``exc`` stands for: CUDA out of memory -> what to change; a
    fault of the machine -> :class:`~fturun.core.errors.EnvironmentFault`; else None."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return RecipeRuntimeError(OOM_ADVICE)
    return environment_fault(exc, output_dir, doing)


@contextmanager
def faults_as_advice(output_dir: str | None = None, doing: str = ""):
    """Raise what :func:`as_advice` makes of a failure of the body (else the failure)."""
    try:
        yield
    except Exception as exc:
        advice = as_advice(exc, output_dir, doing)
        if advice is None:
            raise
        raise advice from exc


def close_status(exc: BaseException | None) -> str:
    """The MLflow status a run ends with: FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED."""
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED"


@contextmanager
def closing(tracker):
    """Close ``tracker`` when the body ends, with the status its outcome gives
    (:func:`close_status`; a failure's error is recorded). A failure :func:`as_advice` knows
    (a full disk, CUDA out of memory) is recorded and raised as that advice. Whatever goes
    wrong while closing, the run's own error is the one raised."""
    try:
        yield tracker
    except BaseException as exc:
        advice = as_advice(exc, getattr(tracker, "output_dir", None)) \
            if isinstance(exc, Exception) else None
        shown = advice or exc
        status = close_status(exc)
        try:
            tracker.close(status, error=f"{type(shown).__name__}: {shown}"
                          if status == "FAILED" else None)
        except Exception as close_exc:  # noqa: BLE001 - the run's error matters more
            print(f"warning: the MLflow run could not be closed ({type(close_exc).__name__}: "
                  f"{close_exc})", file=sys.stderr)
        if advice is not None:
            raise advice from exc
        raise
    tracker.close("FINISHED")
