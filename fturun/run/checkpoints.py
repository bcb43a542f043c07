"""Checkpoints of a run: which one ``--resume`` continues from, the marker that says a checkpoint
was written whole, the removal of an earlier run's checkpoints, and training from one."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field

from ..core.dist import is_main_process
from ..core.errors import FturunError, RecipeRuntimeError, UsageError
from ..core.io import read_json, write_json

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


def latest_complete_checkpoint(output_dir: str, quiet: bool = False) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir``; newer partial or corrupt ones are
    skipped with a warning unless ``quiet`` (and left in place for inspection)."""
    if not os.path.isdir(output_dir):
        return None
    found = sorted((int(m.group(1)), name) for name in os.listdir(output_dir)
                   if (m := CHECKPOINT_NAME.fullmatch(name))
                   and os.path.isdir(os.path.join(output_dir, name)))
    for _, name in reversed(found):
        folder = os.path.join(output_dir, name)
        if checkpoint_is_complete(folder):
            return folder
        if not quiet:
            print(f"warning: skipping {folder}: incomplete or corrupt checkpoint (interrupted "
                  "while saving?)", file=sys.stderr)
    return None


def CompleteMarker(run: dict | None = None):  # noqa: N802 - used like a class
    """A callback marking each checkpoint complete once the Trainer has written all of it. The
    marker also records ``run`` (:func:`run_identity`: the run's data and tracking settings),
    which a later ``--resume`` compares with its own recipe, and ``loss_sum``, the sum of the
    training losses of the steps up to the checkpoint (:mod:`fturun.run.resume_loss`) once the
    callback's ``trainer`` is set."""
    from transformers import TrainerCallback

    class CompleteMarker(TrainerCallback):
        trainer = None

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
                if os.path.isdir(folder):
                    write_json(os.path.join(folder, COMPLETE_MARKER),
                               {"global_step": state.global_step, "run": run,
                                "loss_sum": _loss_sum(self.trainer)})

    return CompleteMarker()


def _loss_sum(trainer) -> float | None:
    """The sum of the step losses the Trainer has seen so far: logged and not yet logged."""
    total, pending = (getattr(trainer, name, None) for name in ("_total_loss_scalar",
                                                                "_tr_loss"))
    if total is None or pending is None:
        return None
    return float(total) + float(pending.item() if hasattr(pending, "item") else pending)


def remove_stale_checkpoints(output_dir: str, quiet: bool = False) -> list:
    """Remove the ``checkpoint-N`` folders of an earlier run in ``output_dir``: left there they
    would be rotated and resumed as if they were this run's. Returns the removed folders
    (printed unless ``quiet``)."""
    if not os.path.isdir(output_dir):
        return []
    stale = sorted(name for name in os.listdir(output_dir)
                   if CHECKPOINT_NAME.fullmatch(name)
                   and os.path.isdir(os.path.join(output_dir, name)))
    for name in stale:
        shutil.rmtree(os.path.join(output_dir, name))
    if stale and not quiet:
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
    except FturunError:  # a message of its own, or an interruption while loading
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


# --------------------------------------------------------------------------------------------
# what a run finds in its output folder when it starts: a resume that matches, a fresh start
# that destroys nothing unasked

MODEL_FOLDERS = ("model", "model-merged")
TRAINER_STATE = "trainer_state.json"


@dataclass
class RunStart:
    """How a run starts in its output folder (:func:`check_run_start`)."""

    output_dir: str
    checkpoint: str | None = None  # resume from it; None: a fresh run
    nothing_to_do: str | None = None  # why there is nothing to train (exit 0), else None
    replacing: list = field(default_factory=list)  # another run's outputs it replaces


def check_run_start(recipe, output_dir: str, resume: str | None, overwrite: bool) -> RunStart:
    """Resolve ``--resume`` and check the folder before anything is loaded: a resume of a
    finished run has nothing to do; a resume whose data or tracking settings differ from the
    checkpoint's run is refused; a fresh run into a folder holding anything another run wrote
    (:func:`other_run_outputs`: a fresh start never deletes or rewrites a file it did not write
    in this run) is refused unless ``overwrite`` or the recipe's ``output.overwrite``. Raises
    :class:`UsageError` (or, for a missing or corrupt checkpoint, :class:`RecipeRuntimeError`).
    Reads only: every process of a launch may call it."""
    overwrite = overwrite or bool((recipe.data.get("output") or {}).get("overwrite"))
    if not resume:
        found = other_run_outputs(output_dir)
        # the main process decides (under a launcher it may already have written this run's
        # records when another process gets here)
        if found and not overwrite and is_main_process():
            raise UsageError(refusal_text(output_dir, found))
        return RunStart(output_dir, replacing=found)
    checkpoint = resolve_resume(resume, output_dir)
    training = recipe.data.get("training") or {}
    done = nothing_to_train(checkpoint, output_dir, training,
                            (recipe.data.get("output") or {}).get("save_model", True))
    if done:
        return RunStart(output_dir, checkpoint, nothing_to_do=done)
    changes = resume_changes(checkpoint, run_identity(recipe))
    if changes:
        raise UsageError(
            f"--resume {checkpoint}: this recipe's settings differ from those of the run that "
            f"saved the checkpoint: {'; '.join(changes)}. A resume continues that run as it "
            "was: set them back; or start a new run (in another training.output_dir, or here "
            "with --overwrite instead of --resume)")
    return RunStart(output_dir, checkpoint)


def run_identity(recipe) -> dict:
    """What a resume must not change, flattened to dotted keys (secrets redacted): the data
    settings and the seed (splits and data order), and where the run is tracked."""
    from ..tracking import TrackingSettings, flatten

    data = recipe.data
    identity = flatten(data.get("data") or {}, "data")
    identity["seed"] = data.get("seed", 42)
    settings = TrackingSettings.from_recipe(recipe)
    identity["tracking.enabled"] = settings.enabled
    if settings.enabled:
        identity.update(flatten({"tracking_uri": settings.tracking_uri,
                                 "experiment": settings.experiment}, "tracking"))
    return identity


def resume_changes(checkpoint: str, identity: dict) -> list:
    """``["data.max_train_samples: 32 -> 64", ...]``: where ``identity`` differs from the one
    the checkpoint's marker recorded ([] for a checkpoint that recorded none)."""
    saved = (read_json(os.path.join(checkpoint, COMPLETE_MARKER), {}) or {}).get("run")
    if not isinstance(saved, dict):
        return []
    changes = []
    for key in sorted(set(saved) | set(identity), key=lambda k: (not k.startswith("data"), k)):
        before, now = saved.get(key, "(not set)"), identity.get(key, "(not set)")
        if before != now:
            changes.append(f"{key}: {json.dumps(before)} -> {json.dumps(now)}")
    return changes


def nothing_to_train(checkpoint: str, output_dir: str, training: dict,
                     save_model: bool = True) -> str | None:
    """Why resuming from ``checkpoint`` would train nothing (the run finished and the recipe
    asks for no more steps), else None: resuming then would train a step past the end and
    overwrite the model."""
    state = read_json(os.path.join(checkpoint, TRAINER_STATE), {}) or {}
    step = int(state.get("global_step") or 0)
    end = state
    final = read_json(os.path.join(output_dir, TRAINER_STATE), {}) or {}
    inside = os.path.abspath(os.path.dirname(checkpoint)) == os.path.abspath(output_dir)
    if inside and int(final.get("global_step") or 0) > step:
        end = final  # the run went on past its last checkpoint (save_strategy "best") to its end
    reached, planned = int(end.get("global_step") or 0), int(end.get("max_steps") or 0)
    max_steps = int(training.get("max_steps") or -1)
    if max_steps > 0:
        if max_steps > reached:
            return None  # more steps asked for: a resume trains them
        text = f"the run finished at step {reached}; nothing to resume"
        if reached < planned:
            text = (f"{checkpoint} is at step {reached} and training.max_steps is {max_steps}: "
                    "nothing to train")
    elif reached < planned or \
            float(training.get("num_train_epochs", 3.0)) > float(end.get("epoch") or 0) + 1e-6:
        return None  # a run stopped before its end, or more epochs asked for
    else:
        text = f"the run finished at step {reached}; nothing to resume"
    advice = " (raise training.max_steps or num_train_epochs and --resume again to train on)"
    model = os.path.join(output_dir, "model")
    if save_model and inside and not os.path.isdir(model):
        advice += (f". Its model was not saved (the run stopped after training): the trained "
                   f"weights are in {checkpoint}")
    return text + advice


#: what a run writes at the top of its output folder besides its model folders and checkpoints:
#: the records of a run that a fresh run must not delete or rewrite unasked
RUN_RECORDS = ("metrics.jsonl", TRAINER_STATE, "mlflow_run.json", "all_results.json",
               "train_results.json", "eval_results.json", "test_results.json", "recipe.json",
               "test_predictions.jsonl", "samples.txt", "engine.json", ".mlflow-staging")
#: a model folder a crash left half-saved (``model.partial``) or half-deleted (``model.old``)
LEFTOVER_MODEL = re.compile(r"(model|model-merged)\.(partial|old)")


def other_run_outputs(output_dir: str) -> list:
    """What an earlier run left in ``output_dir`` that a fresh run would delete or rewrite: its
    model folders, its checkpoints (complete or not), its records (:data:`RUN_RECORDS`) and
    leftovers of a crashed save. Names, in that order; [] for a folder with none of them
    (other files are never touched, so they do not count)."""
    if not os.path.isdir(output_dir):
        return []
    names = os.listdir(output_dir)
    found = [name for name in MODEL_FOLDERS if os.path.isdir(os.path.join(output_dir, name))]
    checkpoints = sorted((int(m.group(1)), name) for name in names
                         if (m := CHECKPOINT_NAME.fullmatch(name))
                         and os.path.isdir(os.path.join(output_dir, name)))
    found += [name for _, name in checkpoints]
    found += sorted(name for name in names if LEFTOVER_MODEL.fullmatch(name))
    return found + [name for name in RUN_RECORDS if name in names]


def refusal_text(output_dir: str, found: list) -> str:
    """Why a fresh run into ``output_dir`` is refused, and the ways on."""
    folders = [n for n in found if n in MODEL_FOLDERS or CHECKPOINT_NAME.fullmatch(n)]
    records = [n for n in found if n not in folders]
    shown = ", ".join(folders[:6]) + (", ..." if len(folders) > 6 else "")
    files = ", ".join(records[:6]) + (", ..." if len(records) > 6 else "")
    if "model" in found:
        what = f"the finished model of an earlier run ({shown})"
    elif folders:
        what = f"checkpoints of an earlier run ({shown})"
    else:
        what = f"the records of an earlier run ({files})"
    if folders and records:
        what += f" and its records ({files})"
    what += "; a fresh run would delete or rewrite them"
    ways = []
    if "model" in found:
        ways.append("train it further with --resume (raise training.max_steps)")
    elif latest_complete_checkpoint(output_dir, quiet=True) is not None:
        ways.append("continue that run with --resume")
    ways.append("train into another training.output_dir")
    return (f"{output_dir} holds {what}. To go on: {', '.join(ways)}, or replace it with "
            "--overwrite (or \"output\": {\"overwrite\": true}): the old model is replaced "
            "only once the new one is saved")


def start_fresh(output_dir: str, data: dict, replacing=()) -> None:
    """Clear what a fresh run must not inherit: checkpoints (they would be rotated and resumed
    as this run's), the metrics log and the end-of-training state; when replacing another run
    (``--overwrite``), also the model folders this run will not write. The model folders it
    writes are replaced only when saved. Prints what it removed."""
    from ..tracking import METRICS_FILE

    output = data.get("output") or {}
    keep = {"model"} if output.get("save_model", True) else set()
    if keep and output.get("merge_adapter"):
        keep.add("model-merged")
    removed = remove_stale_checkpoints(output_dir, quiet=True)
    if replacing:
        for name in MODEL_FOLDERS:
            if name not in keep and os.path.isdir(os.path.join(output_dir, name)):
                shutil.rmtree(os.path.join(output_dir, name))
                removed.append(os.path.join(output_dir, name))
    for name in (METRICS_FILE, TRAINER_STATE):  # the log and the end state of another run
        if os.path.isfile(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
    if replacing:
        kept = [name for name in MODEL_FOLDERS if name in keep and name in replacing]
        print(f"replacing the run in {output_dir} (overwrite): removed "
              f"{', '.join(os.path.basename(p) for p in removed) or 'nothing'}"
              + (f"; its {' and '.join(n + '/' for n in kept)} "
                 f"{'stays' if len(kept) == 1 else 'stay'} until this run saves its own"
                 if kept else ""))
    elif removed:
        print(f"starting fresh in {output_dir}: removed {len(removed)} incomplete "
              f"checkpoint(s) ({', '.join(os.path.basename(p) for p in removed)})")


def remove_untrained_records(output_dir: str, kept) -> list:
    """After a fresh run failed before its first training step: remove what it wrote in the
    folder (its MLflow link, a metrics log of its parameter counts), every name of
    :func:`other_run_outputs` not in ``kept`` (what was there when it started), so that running
    it again once fixed is not refused for records of a run that trained nothing. Returns the
    removed names."""
    removed = [name for name in other_run_outputs(output_dir) if name not in kept]
    for name in removed:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass
    return removed
