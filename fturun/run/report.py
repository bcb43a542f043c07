"""What a run says on the console: the plan and the outcome of ``fturun check`` (with a time
estimate), and the end-of-run summary. Console only: nothing here writes files."""

from __future__ import annotations

import math
import os

from ..core.dist import world_size
from ..data.report_text import summary_lines
from ..engine.hardware import cuda_device_count
from ..plan.speed import evaluations as count_evaluations
from .modelinfo import count_parameters, model_description


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
    return world_size() if world_size() > 1 else max(cuda_device_count(), 1)


def print_plan(build, real: dict, args_kwargs: dict, output_dir: str) -> None:
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
    if context.train_mix is not None:
        for i, line in enumerate(context.train_mix.describe()):
            print(("  mix:      " if i == 0 else "            ") + line)
    for i, line in enumerate(summary_lines(build.data_report) if build.data_report else ()):
        print(("  report:   " if i == 0 else "            ") + line)
    if context.label_names:
        print("  labels:   " + ", ".join(f"{i}={n}" for i, n in enumerate(context.label_names)))
    print(f"  model:    {model_description(build.model)}")
    print(f"  params:   {trainable:,} trainable of {total:,} ({100 * trainable / total:.2f}%)")
    print(f"  batch:    {batch * accumulation * devices} effective ({batch} per device x "
          f"{accumulation} accumulation x {devices} device{'s' if devices > 1 else ''})")
    print(f"  steps:    {steps:,} optimizer steps")
    for i, choice in enumerate(getattr(build, "defaults", ())):  # fturun.engine.speed_defaults
        print(("  defaults: " if i == 0 else "            ") + choice.line())
    print(f"  output:   {output_dir} (the real run's; check saves nothing)")
    print()


def print_check_result(build, real, args_kwargs, train_result, timer, eval_metrics,
                       eval_seconds, eval_rows, check_steps: int) -> None:
    """The check's outcome and a time estimate for the real run from the timed steps."""
    devices = _devices()
    steps = total_steps(real["train"], args_kwargs, devices)
    rows_per_step = min(
        args_kwargs.get("per_device_train_batch_size", 8) * devices
        * args_kwargs.get("gradient_accumulation_steps", 1), len(build.splits["train"]))
    real_rows_per_step = (args_kwargs.get("per_device_train_batch_size", 8) * devices
                          * args_kwargs.get("gradient_accumulation_steps", 1))
    print()
    print(f"check: {check_steps} training steps ran, loss "
          f"{train_result.metrics.get('train_loss', float('nan')):.4f}")
    if eval_metrics is not None:
        shown = {k: round(v, 4) for k, v in eval_metrics.items()
                 if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second"))}
        print(f"check: one eval batch ran: {shown}")
    step_seconds = timer.step_seconds()
    if step_seconds is not None:
        per_step = step_seconds * real_rows_per_step / max(rows_per_step, 1)
        estimate = per_step * steps
        text = f"~{duration(estimate)} of training ({steps:,} steps x ~{per_step:.2f}s)"
        if eval_seconds is not None and eval_metrics is not None and "eval" in real:
            # the planner counts the evaluations the strategy makes; without one, the run's
            # final evaluation is the one
            evaluations = count_evaluations(args_kwargs, steps) or 1
            eval_estimate = eval_seconds / eval_rows * real["eval"] * evaluations
            text += f" + ~{duration(eval_estimate)} for {evaluations} evaluation(s)"
        print(f"estimate: {text}")
    print("check passed: the recipe builds and trains; nothing was saved or tracked")


def duration(seconds: float) -> str:
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
    print(f"done in {duration(seconds)}")
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
