"""The plan of a run being started (``fturun RECIPE``, ``fturun check``): made once the data is
tokenized (its real row lengths, row counts and labels), printed, recorded; the ``"auto"``
per-device batch chosen from it; its figures compared with what the run measures."""

from __future__ import annotations

import random
import statistics

from ..core.dist import world_size
from ..core.errors import FturunError
from ..engine.speed_defaults import arrow_lengths
from .devices import local_device
from .make import DataFigures, make_plan, plan_for_recipe
from .verdict import AUTO_MARGIN, auto_batch


def padded_length(lengths: list, batch: int, seed: int = 0, samples: int = 200) -> float:
    """The mean padded length of a batch of ``batch`` rows drawn from ``lengths`` (a batch is
    padded to its longest row)."""
    rng = random.Random(seed)
    batch = max(min(batch, len(lengths)), 1)
    return statistics.fmean(max(rng.sample(lengths, batch)) for _ in range(samples))


def data_figures(build, real_sizes: dict | None = None) -> DataFigures:
    """What the built data says: rows (before check's cap), real token lengths, labels."""
    sizes = real_sizes or {name: len(ds) for name, ds in build.splits.items()}
    lengths = arrow_lengths(build.splits["train"]) or []
    batch = build.args_kwargs.get("per_device_train_batch_size", 8)
    batch = batch if isinstance(batch, int) else 8
    labels = build.context.model_kwargs.get("num_labels")
    figures = DataFigures(train_rows=sizes.get("train"), eval_rows=sizes.get("eval"),
                          num_labels=labels)
    if lengths:
        figures.longest = max(lengths)
        figures.padded = padded_length(lengths, batch)
        figures.source = f"the tokenized data: longest {max(lengths)}, mean " \
                         f"{statistics.fmean(lengths):.0f}"
    return figures


def plan_for_build(recipe, registry, build, real_sizes=None):
    """The run's plan on this machine's device over its processes, or ``(None, reason)``
    when the planner cannot plan this recipe (a plugin's model or adapter): a run goes on."""
    try:
        plan = plan_for_recipe(recipe, registry, devices=world_size(),
                               data=data_figures(build, real_sizes), device=local_device())
    except FturunError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a planner's bug must not stop the run it plans
        return None, f"the planner failed ({type(exc).__name__}: {exc}); the run goes on"
    return plan, None


def settle_auto_batch(recipe, build, plan, log=print) -> dict | None:
    """For ``training.per_device_train_batch_size: "auto"``: the largest rows per device the
    plan says fit with :data:`AUTO_MARGIN` free, accumulation raised to keep the effective
    batch (``training.effective_batch_size``, else the recipe's accumulation x devices);
    set in the build's TrainingArguments, printed; returns what was chosen (None: no auto)."""
    training = recipe.data.get("training") or {}
    if training.get("per_device_train_batch_size") != "auto":
        return None
    devices = plan.settings.devices if plan is not None else max(world_size(), 1)
    effective = int(training.get("effective_batch_size")
                    or training.get("gradient_accumulation_steps", 1) * devices)
    if plan is None:
        batch, accumulation = 1, max(effective // devices, 1)
        why = "no plan could be made: one row per device"
    else:
        batch, accumulation = auto_batch(plan.planner, plan.settings, effective)
        why = f"the largest that fits the plan with {AUTO_MARGIN:.0%} of the memory free"
    build.args_kwargs.update(per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accumulation)
    log(f"batch: per_device_train_batch_size auto -> {batch}, gradient_accumulation_steps "
        f"{accumulation}: effective batch {batch * accumulation * devices} ({why})")
    if plan is not None:
        fresh = make_plan(plan.planner, plan.settings.but(batch=batch, accumulation=accumulation))
        plan.settings, plan.figures, plan.run = fresh.settings, fresh.figures, fresh.run
        plan.fits, plan.suggestions = fresh.fits, fresh.suggestions
    return {"per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation,
            "effective_batch_size": batch * accumulation * devices}


def start_plan(recipe, registry, build, real_sizes=None, log=print):
    """Make the run's plan, settle an ``"auto"`` batch from it, print it: the plan, or None
    (said why)."""
    plan, reason = plan_for_build(recipe, registry, build, real_sizes)
    settle_auto_batch(recipe, build, plan, log)
    build.args_kwargs.pop("effective_batch_size", None)  # fturun's, not TrainingArguments
    if plan is None:
        log(f"plan: not made: {reason}")
        return None
    from .text import plan_lines

    log("\n".join(plan_lines(plan)))
    return plan


def plan_metrics(plan, peak_memory, clock) -> dict:
    """The ``plan/*`` and ``measured/*`` metrics of a finished training (empty without a
    plan)."""
    from .measure import comparison

    if plan is None:
        return {}
    return comparison(plan, peak_memory.peak() if peak_memory else None,
                      clock.median_step_seconds() if clock else None)
