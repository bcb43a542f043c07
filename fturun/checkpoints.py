"""Checkpoints of a run: which one ``--resume`` continues from, the marker that says a checkpoint
was written whole, the removal of an earlier run's checkpoints, and training from one."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

from .errors import RecipeRuntimeError
from .io import read_json, write_json

COMPLETE_MARKER = "fturun-complete.json"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def resolve_resume(resume: str, output_dir: str) -> str:
    """The checkpoint folder to resume from: the latest ``checkpoint-N`` in ``output_dir`` for
    ``"latest"``, else the given folder. Raise :class:`RecipeRuntimeError` when there is none or
    it is not a complete Trainer checkpoint."""
    if resume == "latest":
        checkpoint = latest_complete_checkpoint(output_dir)
        if checkpoint is None:
            raise RecipeRuntimeError(
                f"--resume: no checkpoint-N folder in {output_dir}; run without --resume to "
                "start fresh (checkpoints are saved when training.save_strategy is not 'no')")
    else:
        checkpoint = resume
        if not os.path.isdir(checkpoint):
            hint = ""
            if "=" in checkpoint:
                hint = (" ('--resume' took this override as its CHECKPOINT: put --resume after "
                        "the KEY=VALUE overrides)")
            raise RecipeRuntimeError(f"--resume {checkpoint}: no such checkpoint folder{hint}")
    state_file = os.path.join(checkpoint, "trainer_state.json")
    try:
        with open(state_file, encoding="utf-8") as f:
            json.load(f)
    except FileNotFoundError:
        raise RecipeRuntimeError(f"--resume {checkpoint}: not a Trainer checkpoint (no "
                                 "trainer_state.json); name a checkpoint-N folder") from None
    except (ValueError, OSError) as exc:
        raise RecipeRuntimeError(f"--resume {checkpoint}: the checkpoint is corrupt "
                                 f"(trainer_state.json: {exc}); resume from an earlier "
                                 "checkpoint or start fresh") from None
    print(f"resuming from {checkpoint}")
    return checkpoint


def checkpoint_is_complete(folder: str) -> bool:
    """A checkpoint fturun finished writing: the marker written after the Trainer's save is
    there, and trainer_state.json parses. A crash mid-save leaves no marker."""
    if read_json(os.path.join(folder, "trainer_state.json")) is None:
        return False
    return os.path.exists(os.path.join(folder, COMPLETE_MARKER))


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir``; newer partial or corrupt ones are
    skipped with a warning (and left in place for inspection)."""
    if not os.path.isdir(output_dir):
        return None
    found = sorted((int(m.group(1)), name) for name in os.listdir(output_dir)
                   if (m := CHECKPOINT_NAME.fullmatch(name))
                   and os.path.isdir(os.path.join(output_dir, name)))
    for _, name in reversed(found):
        folder = os.path.join(output_dir, name)
        if checkpoint_is_complete(folder):
            return folder
        print(f"warning: skipping {folder}: incomplete or corrupt checkpoint (interrupted "
              "while saving?)", file=sys.stderr)
    return None


def CompleteMarker():  # noqa: N802 - used like a class
    """A callback marking each checkpoint complete once the Trainer has written all of it."""
    from transformers import TrainerCallback

    class CompleteMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
                if os.path.isdir(folder):
                    write_json(os.path.join(folder, COMPLETE_MARKER),
                               {"global_step": state.global_step})

    return CompleteMarker()


def remove_stale_checkpoints(output_dir: str) -> list:
    """A fresh run replaces an earlier run's outputs in the same folder, its ``checkpoint-N``
    folders included: left there they would be rotated and resumed as if they were this run's.
    Returns the removed folders (each is printed)."""
    if not os.path.isdir(output_dir):
        return []
    stale = sorted(name for name in os.listdir(output_dir)
                   if CHECKPOINT_NAME.fullmatch(name)
                   and os.path.isdir(os.path.join(output_dir, name)))
    for name in stale:
        shutil.rmtree(os.path.join(output_dir, name))
    if stale:
        print(f"starting fresh in {output_dir}: removed {len(stale)} checkpoint(s) of an earlier "
              f"run ({', '.join(stale)}); use --resume to continue a run instead")
    return [os.path.join(output_dir, name) for name in stale]


def FirstStepMarker():  # noqa: N802 - used like a class
    """A callback noting when the first training step begins (checkpoint loading is done)."""
    from transformers import TrainerCallback

    class FirstStepMarker(TrainerCallback):
        started = False

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = True

    return FirstStepMarker()


def train_from(trainer, checkpoint):
    """``trainer.train()``, resuming from ``checkpoint`` when given. A failure while the
    checkpoint is loaded (before the first step) is reported as a corrupt checkpoint."""
    if checkpoint is None:
        return trainer.train()
    marker = FirstStepMarker()
    trainer.add_callback(marker)
    try:
        return trainer.train(resume_from_checkpoint=checkpoint)
    except RecipeRuntimeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any load failure means a bad checkpoint
        import torch

        if marker.started or isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        raise RecipeRuntimeError(
            f"--resume {checkpoint}: cannot load the checkpoint ({type(exc).__name__}: "
            f"{str(exc)[:300]}); it is corrupt or from a different recipe. Resume from an "
            "earlier checkpoint or start fresh") from None
    finally:
        trainer.remove_callback(marker)
