"""Build the parts a recipe names and drive the Trainer: ``fturun run`` and ``fturun check``.

The build order is the one :mod:`fturun.hookspecs` promises factories: datasets, tokenizer and
model, adapter, collator, loss, metrics, optimizer, scheduler, callbacks. Each factory reads what
the :class:`~fturun.context.BuildContext` holds at its turn.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .builtin.adapters import count_parameters
from .context import BuildContext
from .data import component_ref, prepare_datasets, subsample, tokenize_datasets
from .errors import Interrupted, RecipeRuntimeError
from .launch import (EngineReport, fix_loss_scaling, is_main_process, launch_arguments,
                     load_deepspeed_config, main_process_first, quiet_off_main,
                     single_process_environment)
from .schema import effective_metrics
from .tasks import GENERATIVE, configure_task, metric_inputs, trainer_classes

#: default collator per task (a recipe's ``collator`` overrides it)
DEFAULT_COLLATORS = {
    "sequence-classification": "padding",
    "token-classification": "token_classification",
    "masked-lm": {"name": "language_modeling", "params": {"mlm": True}},
    "causal-lm": {"name": "language_modeling", "params": {"mlm": False}},
    "seq2seq": "seq2seq",
    "causal-lm+packing": "packing",  # data.packing
}

#: rows per split that ``fturun check`` builds and runs on
CHECK_ROWS = 16
CHECK_STEPS = 2

OOM_ADVICE = (
    "CUDA ran out of memory. Try, in the recipe's training section: a smaller "
    "per_device_train_batch_size (and per_device_eval_batch_size) with a larger "
    "gradient_accumulation_steps to keep the effective batch size, "
    "\"gradient_checkpointing\": true, or a smaller data.max_length"
)


@dataclass
class Build:
    """Everything built for one run, ready for a Trainer."""

    context: BuildContext
    splits: dict
    model: Any
    tokenizer: Any
    trainer_kwargs: dict = field(default_factory=dict)
    args_kwargs: dict = field(default_factory=dict)
    real_sizes: dict = field(default_factory=dict)  # rows per split before check's cap


# --------------------------------------------------------------------------------------------
# commands


def run_recipe(recipe, registry, resume=None) -> int:
    """Train, evaluate (and predict on a test split), save the model, the resolved recipe and the
    metrics in the output dir, and print a summary. ``resume``: ``"latest"`` or a checkpoint
    folder. Returns the exit code (0); failures raise :class:`RecipeRuntimeError`."""
    import torch

    try:
        return _run(recipe, registry, resume)
    except torch.cuda.OutOfMemoryError:
        raise RecipeRuntimeError(OOM_ADVICE) from None


def check_recipe(recipe, registry) -> int:
    """Build every part on a few rows, print the plan of the real run (sizes, labels, model,
    parameters, batch size, steps, a time estimate), then run two optimizer steps and one eval
    batch in a temporary folder: nothing is tracked or saved. Returns the exit code (0)."""
    import torch

    try:
        return _check(recipe, registry)
    except torch.cuda.OutOfMemoryError:
        raise RecipeRuntimeError(OOM_ADVICE) from None


def _run(recipe, registry, resume) -> int:
    from .plugins import default_plugins
    from .tracking import Tracker, log_run_results

    started = time.monotonic()
    data = recipe.data
    output_dir = default_output_dir(recipe)
    checkpoint = resolve_resume(resume, output_dir) if resume else None
    # the tracking server is checked before anything heavy is loaded
    tracker = Tracker.open(recipe, output_dir, resume=checkpoint is not None,
                           plugins=default_plugins().plugins)
    stop = GracefulStop()
    try:
        with stop:
            build = build_run(recipe, registry, output_dir, tracker=tracker)
            build.trainer_kwargs["callbacks"] = list(build.trainer_kwargs.get("callbacks") or [])
            clock = FirstStepClock()
            build.trainer_kwargs["callbacks"] += [c for c in (tracker.callback(),
                                                              stop.callback(), clock,
                                                              CompleteMarker()) if c]
            engine_report = EngineReport(output_dir, tracker)
            build.trainer_kwargs["callbacks"].append(engine_report)
            trainer = make_trainer(build)
            engine_report.trainer = trainer
            context = build.context
            if tracker.run_id:
                print(f"MLflow run {tracker.run_id} at {tracker.tracking_uri}")
            log_run_params(tracker, data, trainer, build.model)
            for split, ds in build.splits.items():
                ref = data["data"].get(split) or data["data"]["train"]
                tracker.log_input(split, json.dumps(ref, sort_keys=True), ds._fingerprint,
                                  len(ds), split)

            if checkpoint is None and is_main_process():
                remove_stale_checkpoints(output_dir)
            train_result = train(trainer, checkpoint)
            if stop.requested:
                raise stop.exception()
            metrics = {"train": dict(train_result.metrics)}
            if clock.seconds is not None:
                metrics["train"]["seconds_to_first_step"] = round(clock.seconds, 3)
            trainer.save_metrics("train", metrics["train"])
            trainer.save_state()
            if build.splits.get("eval") is not None:
                metrics["eval"] = trainer.evaluate()
                trainer.save_metrics("eval", metrics["eval"])
            if build.splits.get("test") is not None:
                prediction = trainer.predict(build.splits["test"], metric_key_prefix="test")
                metrics["test"] = dict(prediction.metrics)
                trainer.save_metrics("test", metrics["test"])
                tracker.log_metrics(metrics["test"], trainer.state.global_step)
                if is_main_process():
                    write_predictions(prediction, context,
                                      os.path.join(output_dir, "test_predictions.jsonl"))
            if context.task in GENERATIVE:  # a few generations: printed, saved, tracked
                from .tasks import log_samples

                log_samples(trainer.model, build.tokenizer, context, output_dir)

            saved = save_outputs(trainer, build, data, output_dir)
            results_file = os.path.join(output_dir, "eval_results.json")
            if is_main_process():  # one writer; the other ranks only train and evaluate
                write_json(os.path.join(output_dir, "recipe.json"), data)
                write_json(results_file, {k: v for part in ("eval", "test")
                                          for k, v in metrics.get(part, {}).items()})
            model_dir = saved.get("adapter") or saved.get("model")
            log_run_results(tracker, recipe, trainer.state.log_history, output_dir, model_dir,
                            results_file)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            tracker.close("KILLED")
        else:
            tracker.close("FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    tracker.close("FINISHED")
    if not is_main_process():
        return 0
    print_summary(metrics, saved, output_dir, time.monotonic() - started, trainer)
    if tracker.run_id:
        print(f"  MLflow run: {tracker.run_id} (experiment {tracker.experiment_id}) at "
              f"{tracker.tracking_uri}")
    return 0


def _check(recipe, registry) -> int:
    with tempfile.TemporaryDirectory(prefix="fturun-check-") as tmp:
        build = build_run(recipe, registry, tmp, check_rows=CHECK_ROWS)
        real = build.real_sizes
        plan_args = dict(build.args_kwargs)
        args_kwargs = dict(build.args_kwargs)
        args_kwargs.update(output_dir=tmp, max_steps=CHECK_STEPS, report_to="none",
                           logging_steps=1, push_to_hub=False)
        if args_kwargs.get("eval_strategy", "no") != "no":
            # strategies that satisfy the recipe's callbacks and load_best_model_at_end; the
            # CheckProbe callback keeps the Trainer from evaluating or saving, and the check
            # evaluates one batch itself, below
            args_kwargs.update(eval_strategy="steps", eval_steps=10**9, save_strategy="steps",
                               save_steps=10**9)
        else:
            args_kwargs.update(save_strategy="no", load_best_model_at_end=False)
        build.args_kwargs = args_kwargs
        timer = CheckProbe()
        build.trainer_kwargs["callbacks"] = list(build.trainer_kwargs.get("callbacks") or []) + [
            timer]
        trainer = make_trainer(build)

        print_plan(build, real, plan_args, default_output_dir(recipe))
        train_result = trainer.train()
        eval_metrics = eval_seconds = one_batch = None
        if build.splits.get("eval") is not None:
            batch = trainer.args.per_device_eval_batch_size
            one_batch = build.splits["eval"].select(range(min(batch, len(build.splits["eval"]))))
            t0 = time.monotonic()
            eval_metrics = trainer.evaluate(eval_dataset=one_batch)
            eval_seconds = time.monotonic() - t0
        print_check_result(build, real, plan_args, train_result, timer, eval_metrics,
                           eval_seconds, len(one_batch) if eval_metrics is not None else 0)
    return 0


# --------------------------------------------------------------------------------------------
# building


def default_output_dir(recipe) -> str:
    """``training.output_dir``, else ``outputs/<recipe file stem>``."""
    training = recipe.data.get("training") or {}
    if training.get("output_dir"):
        return training["output_dir"]
    stem = os.path.splitext(os.path.basename(recipe.path))[0] or "run"
    return os.path.join("outputs", stem)


def build_run(recipe, registry, output_dir: str, check_rows: int | None = None,
              tracker=None) -> Build:
    """Build datasets, model, adapter, collator, loss, metrics, optimizer, scheduler and
    callbacks, and the TrainingArguments kwargs. ``check_rows`` caps every split (for ``check``);
    the real split sizes are kept in ``Build.real_sizes``."""
    from transformers import set_seed

    data = recipe.data
    task = data.get("task", "sequence-classification")
    seed = data.get("seed", 42)
    training = dict(data.get("training") or {})
    from .hardware import check_hardware, check_model

    check_hardware(data, deepspeed_config=load_deepspeed_config(recipe))
    from .hub import check_push_to_hub

    check_push_to_hub(training)
    cuda = _has_cuda()
    if data.get("deepspeed") is not None:
        single_process_environment(quiet_off_main())  # no-op under a launcher
    set_seed(seed)
    context = BuildContext(recipe=data, task=task,
                           recipe_dir=recipe.base_dir, output_dir=output_dir, seed=seed,
                           tracker=tracker, log=quiet_off_main())
    context.training_args = training

    data_cfg = data["data"]
    with main_process_first(training, cuda):  # fills the cache the other processes read
        splits = prepare_datasets(data_cfg, registry, context)
    real_sizes = {split: len(ds) for split, ds in splits.items()}
    if check_rows:
        splits = {split: subsample(ds, check_rows, seed) for split, ds in splits.items()}

    model, tokenizer = build_component(registry, "model", data["model"], context)
    context.model, context.tokenizer = model, tokenizer
    with main_process_first(training, cuda):
        splits = tokenize_datasets(splits, data_cfg, context)

    if data.get("adapter") is not None:
        model = build_component(registry, "adapter", data["adapter"], context)
        context.model = model
    check_model(model, training)
    fix_loss_scaling(model, task)  # mean-loss heads: no x N loss under DDP / accumulation
    check_mergeable(data, model)
    collator_ref = data.get("collator") or DEFAULT_COLLATORS.get(
        task + ("+packing" if data_cfg.get("packing") else ""), "padding")
    collator = build_component(registry, "collator", collator_ref, context)
    loss_fn = build_component(registry, "loss", data["loss"], context) \
        if data.get("loss") is not None else None
    metric_fns = [(component_ref(ref)[0], build_component(registry, "metric", ref, context))
                  for ref in effective_metrics(data)]  # the recipe's, else the task's

    args_kwargs = dict(training)
    args_kwargs["output_dir"] = output_dir
    args_kwargs.setdefault("seed", seed)
    trainer_kwargs = {}
    for section in ("optimizer", "scheduler"):
        if data.get(section) is None:
            continue
        result = build_component(registry, section, data[section], context) or {}
        if not isinstance(result, dict) or not set(result) <= {"training_args",
                                                              "optimizer_cls_and_kwargs"}:
            raise RecipeRuntimeError(
                f"{section} '{component_ref(data[section])[0]}' returned {result!r}; a "
                f"{section} factory returns {{\"training_args\": {{...}}}} or "
                "{\"optimizer_cls_and_kwargs\": (cls, kwargs)}")
        args_kwargs.update(result.get("training_args") or {})
        if result.get("optimizer_cls_and_kwargs") is not None:
            trainer_kwargs["optimizer_cls_and_kwargs"] = result["optimizer_cls_and_kwargs"]
    context.training_args = args_kwargs
    callbacks = [build_component(registry, "callback", ref, context)
                 for ref in data.get("callbacks") or []]
    args_kwargs["report_to"] = report_to_without_mlflow(args_kwargs.get("report_to"))
    args_kwargs.update(launch_arguments(recipe, cuda))  # deepspeed; use_cpu+gloo for CPU DDP
    if not cuda:
        args_kwargs.setdefault("dataloader_pin_memory", False)  # pinning is for CUDA only

    trainer_kwargs.update(
        model=model,
        train_dataset=splits["train"],
        eval_dataset=splits.get("eval"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_loss_func=loss_fn,
        compute_metrics=make_compute_metrics(metric_fns, context) if metric_fns else None,
        callbacks=callbacks or None,
    )
    configure_task(context, metric_fns, args_kwargs, trainer_kwargs)
    return Build(context=context, splits=splits, model=model, tokenizer=tokenizer,
                 trainer_kwargs=trainer_kwargs, args_kwargs=args_kwargs, real_sizes=real_sizes)


def build_component(registry, kind: str, ref, context):
    """Call the factory of the component ``ref`` names with its params and ``context``."""
    name, params = component_ref(ref)
    try:
        component = registry.get(kind, name)
    except KeyError as exc:
        raise RecipeRuntimeError(exc.args[0]) from None
    return component.factory(params, context)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_mergeable(data: dict, model) -> None:
    """``output.merge_adapter`` works for weight adapters (LoRA, LoHa, ...), not for soft
    prompts: say so before training rather than after."""
    if not (data.get("output") or {}).get("merge_adapter") or not is_peft_model(model):
        return
    config = model.peft_config[model.active_adapter]
    if getattr(config, "is_prompt_learning", False):
        raise RecipeRuntimeError(
            f"output.merge_adapter: a {config.peft_type.value} adapter adds virtual tokens and "
            "cannot be merged into the model's weights; remove output.merge_adapter")


def report_to_without_mlflow(value) -> list | str:
    """The recipe's ``report_to`` without ``mlflow`` (fturun tracks runs itself); ``"none"``
    when nothing is left. ``"all"`` means every installed integration but MLflow."""
    if value is None or value == "none":
        return "none"
    names = [value] if isinstance(value, str) else list(value)
    if "all" in names:
        from transformers.integrations import get_available_reporting_integrations

        names = [n for n in names if n != "all"] + get_available_reporting_integrations()
    names = [n for n in dict.fromkeys(names) if n not in ("mlflow", "none")]
    return names or "none"


def make_compute_metrics(metric_fns, context=None):
    """One ``compute_metrics(eval_pred)`` for the Trainer: the task's predictions and references
    (:func:`fturun.tasks.metric_inputs`: arg-maxed class ids for classification), then merge
    what each metric function returns. A function with ``uses_loss`` also gets ``eval_loss``."""
    from .tasks import loss_from_eval_pred

    def compute_metrics(eval_pred):
        predictions, references = metric_inputs(eval_pred, context)
        results = {}
        for name, metric_fn in metric_fns:
            if getattr(metric_fn, "uses_loss", False):
                value = metric_fn(predictions, references,
                                  eval_loss=loss_from_eval_pred(eval_pred))
            else:
                value = metric_fn(predictions, references)
            if not isinstance(value, dict):
                raise RecipeRuntimeError(f"metric '{name}' returned {type(value).__name__}, "
                                         "not a dict of name -> value")
            results.update(value)
        return results

    return compute_metrics


def log_run_params(tracker, data: dict, trainer, model, extra: dict | None = None) -> None:
    """A run's params (the flattened recipe, the effective TrainingArguments as ``args.*``, and
    ``extra``) and its trainable/total parameter counts."""
    from .tracking import flatten

    params = flatten(data)
    params.update({f"args.{k}": v for k, v in trainer.args.to_dict().items()})
    params.update(extra or {})
    tracker.log_params(params)
    trainable, total = count_parameters(model)
    tracker.log_metrics({"trainable_params": trainable, "total_params": total}, 0)


def make_trainer(build: Build):
    """The TrainingArguments and Trainer of a build; bad argument combinations are reported as
    :class:`RecipeRuntimeError`."""
    trainer_class, arguments_class = trainer_classes(build.context.task)
    try:
        args = arguments_class(**build.args_kwargs)
    except (ValueError, TypeError) as exc:
        raise RecipeRuntimeError(f"training: {exc}") from None
    return trainer_class(args=args, **build.trainer_kwargs)


# --------------------------------------------------------------------------------------------
# training, resuming, saving


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


COMPLETE_MARKER = "fturun-complete.json"


def checkpoint_is_complete(folder: str) -> bool:
    """A checkpoint fturun finished writing: the marker written after the Trainer's save is
    there, and trainer_state.json parses. A crash mid-save leaves no marker."""
    try:
        with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as f:
            json.load(f)
        return os.path.exists(os.path.join(folder, COMPLETE_MARKER))
    except (OSError, ValueError):
        return False


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir``; newer partial or corrupt ones are
    skipped with a warning (and left in place for inspection)."""
    import re
    import sys

    if not os.path.isdir(output_dir):
        return None
    found = sorted((int(m.group(1)), name) for name in os.listdir(output_dir)
                   if (m := re.fullmatch(r"checkpoint-(\d+)", name))
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
                    tmp = os.path.join(folder, COMPLETE_MARKER + ".tmp")
                    with open(tmp, "w") as f:
                        json.dump({"global_step": state.global_step}, f)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, os.path.join(folder, COMPLETE_MARKER))

    return CompleteMarker()


def remove_stale_checkpoints(output_dir: str) -> list:
    """A fresh run replaces an earlier run's outputs in the same folder, its ``checkpoint-N``
    folders included: left there they would be rotated and resumed as if they were this run's.
    Returns the removed folders (each is printed)."""
    import re
    import shutil

    if not os.path.isdir(output_dir):
        return []
    stale = sorted(name for name in os.listdir(output_dir)
                   if re.fullmatch(r"checkpoint-\d+", name)
                   and os.path.isdir(os.path.join(output_dir, name)))
    for name in stale:
        shutil.rmtree(os.path.join(output_dir, name))
    if stale:
        print(f"starting fresh in {output_dir}: removed {len(stale)} checkpoint(s) of an earlier "
              f"run ({', '.join(stale)}); use --resume to continue a run instead")
    return [os.path.join(output_dir, name) for name in stale]


def train(trainer, checkpoint):
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


def save_outputs(trainer, build: Build, data: dict, output_dir: str) -> dict:
    """Save the model (an adapter for a peft model) and tokenizer to ``output_dir/model``, and
    the merged model to ``output_dir/model-merged`` when ``output.merge_adapter``. Returns
    ``{what: folder}``."""
    output = data.get("output") or {}
    saved = {}
    if not output.get("save_model", True):
        return saved
    model_dir = os.path.join(output_dir, "model")
    partial = partial_folder(model_dir)  # the same name on every rank
    trainer.save_model(partial)  # the tokenizer too: it is the Trainer's processing_class
    saved["adapter" if is_peft_model(trainer.model) else "model"] = model_dir
    if not is_main_process():  # save_model runs on every rank (ZeRO-3 gathers); rank 0 writes
        return saved
    if is_peft_model(trainer.model) and build.context.model_kwargs:
        # the label map beside the adapter: AutoPeftModelFor...from_pretrained(model_dir,
        # **labels) rebuilds the base model with the right head (a config.json here would make
        # transformers take the folder for a full model)
        write_json(os.path.join(partial, "labels.json"), build.context.model_kwargs)
    replace_folder(partial, model_dir)
    if output.get("merge_adapter"):
        if not is_peft_model(trainer.model):
            print("note: output.merge_adapter is set but the recipe has no adapter; nothing "
                  "to merge")
        else:
            merged_dir = os.path.join(output_dir, "model-merged")
            try:
                merged = trainer.model.merge_and_unload()
            except (AttributeError, ValueError, NotImplementedError) as exc:
                raise RecipeRuntimeError(f"output.merge_adapter: this adapter cannot be merged "
                                         f"into the model ({exc}); remove "
                                         "output.merge_adapter") from None
            partial = partial_folder(merged_dir)
            merged.save_pretrained(partial)
            if build.tokenizer is not None:
                build.tokenizer.save_pretrained(partial)
            replace_folder(partial, merged_dir)
            saved["merged model"] = merged_dir
    return saved


def is_peft_model(model) -> bool:
    """Whether ``model`` is a peft model (without importing peft when it is not loaded)."""
    import sys

    peft = sys.modules.get("peft")
    return bool(peft) and isinstance(model, peft.PeftModel)


def write_json(path: str, value) -> None:
    """Write ``value`` as indented JSON, atomically: a temporary file, then a rename, so that a
    crash (or another process reading it) never meets a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def partial_folder(final: str) -> str:
    """Where ``final`` is written before :func:`replace_folder` puts it in place:
    ``final + ".partial"``, cleared (by the main process) of what a crashed save left."""
    import shutil

    partial = final + ".partial"
    if is_main_process() and os.path.isdir(partial):
        shutil.rmtree(partial)
    return partial


def replace_folder(partial: str, final: str) -> None:
    """Put a completely written folder in place of ``final``: a crash while writing leaves the
    previous ``final`` (or none) and a ``.partial`` folder, never a half-written ``final``."""
    import shutil

    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(partial, final)


def write_predictions(prediction, context, path: str) -> None:
    """One JSON line per test row: the predicted label (and the true one when known)."""
    import numpy as np

    if getattr(context, "task", "sequence-classification") != "sequence-classification":
        from .tasks import write_predictions as write_task_predictions

        write_task_predictions(prediction, context, path)
        return

    logits = prediction.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    predicted = np.argmax(logits, axis=-1).tolist()
    names = context.label_names or []
    truth = prediction.label_ids.tolist() if prediction.label_ids is not None else None
    with open(path, "w", encoding="utf-8") as f:
        for i, p in enumerate(predicted):
            row = {"prediction": names[p] if p < len(names) else p}
            if truth is not None:
                row["label"] = names[truth[i]] if 0 <= truth[i] < len(names) else truth[i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------
# reporting


def model_description(model) -> str:
    """The model class, and the base model class under a peft adapter."""
    if is_peft_model(model):
        return f"{type(model).__name__} over {type(model.get_base_model()).__name__}"
    return type(model).__name__


def total_steps(n_rows: int, training: dict, n_devices: int = 1) -> int:
    """Optimizer steps the Trainer takes for ``n_rows``: ``max_steps`` when set, else
    ``ceil(epochs * ceil(batches / gradient_accumulation_steps))``."""
    max_steps = training.get("max_steps", -1)
    if max_steps and max_steps > 0:
        return int(max_steps)
    batch = training.get("per_device_train_batch_size", 8) * max(n_devices, 1)
    accumulation = max(training.get("gradient_accumulation_steps", 1), 1)
    batches = math.ceil(n_rows / batch)
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return int(math.ceil(training.get("num_train_epochs", 3.0) * per_epoch))


def _devices() -> int:
    """Processes under a launcher, else the GPUs one process drives (DataParallel)."""
    import torch

    from .launch import world_size

    return world_size() if world_size() > 1 else max(torch.cuda.device_count(), 1)


def print_plan(build: Build, real: dict, args_kwargs: dict, output_dir: str) -> None:
    """What the real run would do: data, labels, model, parameters, batch size and steps."""
    context = build.context
    trainable, total = count_parameters(build.model)
    batch = args_kwargs.get("per_device_train_batch_size", 8)
    accumulation = args_kwargs.get("gradient_accumulation_steps", 1)
    devices = _devices()
    steps = total_steps(real["train"], args_kwargs, devices)
    print()
    print("plan")
    print("  data:     " + ", ".join(f"{split} {n:,} rows" for split, n in real.items())
          + f" (checked on {', '.join(f'{len(ds)} {s}' for s, ds in build.splits.items())})")
    if context.label_names:
        print("  labels:   " + ", ".join(f"{i}={n}" for i, n in enumerate(context.label_names)))
    print(f"  model:    {model_description(build.model)}")
    print(f"  params:   {trainable:,} trainable of {total:,} ({100 * trainable / total:.2f}%)")
    print(f"  batch:    {batch * accumulation * devices} effective ({batch} per device x "
          f"{accumulation} accumulation x {devices} device{'s' if devices > 1 else ''})")
    print(f"  steps:    {steps:,} optimizer steps")
    print(f"  output:   {output_dir} (the real run's; check saves nothing)")
    print()


def print_check_result(build, real, args_kwargs, train_result, timer, eval_metrics,
                       eval_seconds, eval_rows) -> None:
    """The check's outcome and a time estimate for the real run from the timed steps."""
    devices = _devices()
    steps = total_steps(real["train"], args_kwargs, devices)
    rows_per_step = min(
        args_kwargs.get("per_device_train_batch_size", 8) * devices
        * args_kwargs.get("gradient_accumulation_steps", 1), len(build.splits["train"]))
    real_rows_per_step = (args_kwargs.get("per_device_train_batch_size", 8) * devices
                          * args_kwargs.get("gradient_accumulation_steps", 1))
    print()
    print(f"check: {CHECK_STEPS} training steps ran, loss "
          f"{train_result.metrics.get('train_loss', float('nan')):.4f}")
    if eval_metrics is not None:
        shown = {k: round(v, 4) for k, v in eval_metrics.items()
                 if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second"))}
        print(f"check: one eval batch ran: {shown}")
    step_seconds = timer.step_seconds()
    if step_seconds is not None:
        per_step = step_seconds * real_rows_per_step / max(rows_per_step, 1)
        estimate = per_step * steps
        text = f"~{_duration(estimate)} of training ({steps:,} steps x ~{per_step:.2f}s)"
        if eval_seconds is not None and eval_metrics is not None and "eval" in real:
            evaluations = _evaluations(args_kwargs, steps)
            eval_estimate = eval_seconds / eval_rows * real["eval"] * evaluations
            text += f" + ~{_duration(eval_estimate)} for {evaluations} evaluation(s)"
        print(f"estimate: {text}")
    print("check passed: the recipe builds and trains; nothing was saved or tracked")


def _evaluations(args_kwargs, steps) -> int:
    strategy = args_kwargs.get("eval_strategy", "no")
    if strategy == "steps":
        every = args_kwargs.get("eval_steps") or args_kwargs.get("logging_steps", 500)
        if every < 1:
            every = max(int(every * steps), 1)
        return max(steps // int(every), 1)
    if strategy == "epoch":
        return max(int(math.ceil(args_kwargs.get("num_train_epochs", 3.0))), 1)
    return 1


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_summary(metrics: dict, saved: dict, output_dir: str, seconds: float, trainer) -> None:
    """The run's figures and where everything went."""
    def show(values):
        return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in values.items()
                         if not k.endswith(("_per_second", "samples_per_second", "flos")))

    print()
    print(f"done in {_duration(seconds)}")
    for part in ("train", "eval", "test"):
        if part in metrics:
            print(f"  {part}: {show(metrics[part])}")
    best = trainer.state.best_model_checkpoint
    if best:
        print(f"  best checkpoint: {best} ({trainer.args.metric_for_best_model}="
              f"{trainer.state.best_metric:.4f})")
    for what, folder in saved.items():
        print(f"  {what}: {folder}")
    print(f"  metrics: {os.path.join(output_dir, 'eval_results.json')}; recipe: "
          f"{os.path.join(output_dir, 'recipe.json')}")


# --------------------------------------------------------------------------------------------
# graceful stop on Ctrl-C / SIGTERM


class GracefulStop:
    """While active, the first SIGINT/SIGTERM asks the Trainer (through :meth:`callback`) to
    save a checkpoint and stop at the end of the current step; a second one exits at once."""

    def __init__(self):
        self.requested = None
        self._previous = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        import sys

        if self.requested is not None:
            print("\nsecond interrupt: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.requested = signum
        print("\ninterrupt: saving a checkpoint at the end of this step (again to exit now)",
              file=sys.stderr, flush=True)

    def exception(self):
        """The :class:`Interrupted` to raise once the Trainer has stopped."""
        import signal

        name = signal.Signals(self.requested).name
        return Interrupted(f"stopped by {name}: a checkpoint was saved in the output dir; "
                           "continue with --resume", 128 + self.requested)

    def callback(self):
        """A TrainerCallback that turns a requested stop into save + stop."""
        from transformers import TrainerCallback

        from .launch import StopVote

        stop = self
        vote = StopVote()  # several processes stop at the same step, or none does

        class GracefulStopCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if vote.any(stop.requested is not None) and stop.requested is None:
                    import signal

                    stop.requested = signal.SIGTERM  # another process was signalled
                if stop.requested is not None:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return GracefulStopCallback()


# --------------------------------------------------------------------------------------------
# callbacks the runner itself uses (built on demand: transformers is imported only when needed)


def FirstStepClock():  # noqa: N802 - used like a class
    """A callback noting the seconds from process start (``fturun.cli.PROCESS_START``) to the
    end of the first optimizer step: startup, data preparation and model loading included."""
    from transformers import TrainerCallback

    from .cli import PROCESS_START

    class FirstStepClock(TrainerCallback):
        seconds = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.seconds is None:
                self.seconds = time.time() - PROCESS_START

    return FirstStepClock()


def FirstStepMarker():  # noqa: N802 - used like a class
    """A callback noting when the first training step begins (checkpoint loading is done)."""
    from transformers import TrainerCallback

    class FirstStepMarker(TrainerCallback):
        started = False

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = True

    return FirstStepMarker()


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
