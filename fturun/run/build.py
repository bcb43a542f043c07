"""Turn a validated recipe and the registry into everything a Trainer needs: the data, the model
(and adapter), collator, loss, metrics, optimizer, scheduler and callbacks, the
TrainingArguments and the Trainer itself.

The build order is the one :mod:`fturun.hookspecs` promises factories: datasets, tokenizer and
model, adapter, collator, loss, metrics, optimizer, scheduler, callbacks. Each factory reads what
the :class:`~fturun.plugin.context.BuildContext` holds at its turn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..core.dist import main_process_first, quiet_off_main
from ..core.errors import RecipeRuntimeError
from ..data import subsample
from ..engine.distributed import (
    fix_loss_scaling,
    launch_arguments,
    load_deepspeed_config,
    single_process_environment,
)
from ..engine.hardware import check_hardware, check_model, cuda_available
from ..engine.hub import check_push_to_hub
from ..engine.integrations import check_integrations
from ..engine.speed_defaults import install_length_sampler, speed_defaults
from ..plugin.context import BuildContext
from ..plugin.tasks import configure_trainer, get_task, loss_from_eval_pred
from ..recipe.refs import component_ref
from ..tracking import NullTracker
from .data_step import prepare_data, tokenize_data
from .model_ref import model_resolver
from .modelinfo import is_peft_model
from .preflight import check_model_settings
from .progress import library_bars_off
from .rewards import build_rewards
from .wiring import MeanLoss, checked_settings, install_scheduler, what_ran


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
    cuda: bool = False
    #: ``args.*`` params that say what ran where a component replaced a TrainingArguments
    #: choice (``args.optim`` for an optimizer class, ...): logged over the Trainer's own
    ran_params: dict = field(default_factory=dict)
    #: ``(name, make_scheduler)`` of a scheduler component with a schedule of its own
    scheduler: tuple | None = None
    #: the registry the parts were built from (a merge reloads the base model through it)
    registry: Any = None
    #: the speed defaults considered (:mod:`fturun.engine.speed_defaults`): chosen, or kept from
    #: the recipe
    defaults: list = field(default_factory=list)
    #: the data report (:mod:`fturun.data.reporting`; its summary: ``summary_lines``), None
    #: when the model gives no tokenizer alone
    data_report: dict | None = None
    #: ``[(name, metric function)]`` of the run's metrics (checked before training)
    metric_fns: list = field(default_factory=list)

    def add_callbacks(self, *callbacks) -> None:
        """Append callbacks (None skipped) to the Trainer's."""
        existing = list(self.trainer_kwargs.get("callbacks") or [])
        self.trainer_kwargs["callbacks"] = existing + [c for c in callbacks if c is not None]


def default_output_dir(recipe) -> str:
    """``training.output_dir``, else ``outputs/<recipe file stem>``."""
    training = recipe.data.get("training") or {}
    if training.get("output_dir"):
        return training["output_dir"]
    stem = os.path.splitext(os.path.basename(recipe.path))[0] or "run"
    return os.path.join("outputs", stem)


def build_run(recipe, registry, output_dir: str, check_rows: int | None = None,
              tracker=None, checked: bool = False) -> Build:
    """Build datasets, model, adapter, collator, loss, metrics, optimizer, scheduler and
    callbacks, and the TrainingArguments kwargs. ``check_rows`` caps every split (for ``check``);
    the real split sizes are kept in ``Build.real_sizes``. Factories see ``tracker`` as
    ``context.tracker`` (a :class:`~fturun.tracking.NullTracker` when None: never None);
    ``checked``: :func:`check_before_loading` already passed."""
    data = recipe.data
    if not checked:
        check_before_loading(recipe)
    context = build_context(recipe, registry, output_dir, tracker)
    build = _build_data_and_model(data, registry, context, check_rows, recipe.path)
    build.registry = registry
    build.args_kwargs, build.trainer_kwargs = _build_training_parts(recipe, registry, build)
    return build


def build_context(recipe, registry, output_dir: str, tracker=None) -> BuildContext:
    """The build context of a run of ``recipe`` (the seed set for everything random)."""
    from transformers import set_seed

    data = recipe.data
    library_bars_off()
    set_seed(seed := data.get("seed", 42))
    server = (data.get("tracking") or {}).get("tracking_uri")  # of a model named models:/...
    context = BuildContext(recipe=data, task=data.get("task", "sequence-classification"),
                           recipe_dir=recipe.base_dir, output_dir=output_dir, seed=seed,
                           tracker=tracker if tracker is not None else NullTracker(),
                           log=quiet_off_main(), model_resolver=model_resolver(server))
    context.task_record = get_task(registry, context.task)
    context.training_args = dict(data.get("training") or {})
    return context


def check_before_loading(recipe) -> None:
    """What can be refused before any data or model is loaded: ``training.report_to``
    integrations that are not installed, the hardware rules, a push to an unreachable Hub; and
    a one-process environment for DeepSpeed outside a launcher."""
    data = recipe.data
    check_integrations(recipe)
    check_hardware(data, deepspeed_config=load_deepspeed_config(recipe),
                   file=recipe.path, locate=recipe.locate)
    check_push_to_hub(dict(data.get("training") or {}))
    check_model_settings(recipe)  # config_overrides, generation length, registered name
    if data.get("deepspeed") is not None:
        single_process_environment(quiet_off_main())  # no-op under a launcher


def _build_data_and_model(data: dict, registry, context, check_rows, recipe_path) -> Build:
    """Datasets (prepared and reported on, then tokenized once the tokenizer exists; or read
    from ``data.preprocessed``), model and adapter."""
    training, cuda = context.training_args, cuda_available()
    with main_process_first(training, cuda):  # fills the cache the other processes read
        splits, preprocessed, data_report = prepare_data(data, registry, context, recipe_path)
    real_sizes = {split: len(ds) for split, ds in splits.items()}
    if check_rows:
        splits = {split: subsample(ds, check_rows, context.seed) for split, ds in splits.items()}

    model, tokenizer = build_component(registry, "model", data["model"], context)
    context.model, context.tokenizer = model, tokenizer
    with main_process_first(training, cuda):
        splits, data_report = tokenize_data(splits, data, context, preprocessed, data_report)

    if data.get("adapter") is not None:
        model = build_component(registry, "adapter", data["adapter"], context)
        context.model = model
    check_model(model, training)
    # mean-loss heads: no x N loss under DDP / gradient accumulation
    fix_loss_scaling(model, context.task_record.mean_loss)
    check_mergeable(data, model)
    return Build(context=context, splits=splits, model=model, tokenizer=tokenizer,
                 real_sizes=real_sizes, cuda=cuda, data_report=data_report)


def _build_training_parts(recipe, registry, build: Build) -> tuple:
    """Collator, loss, metrics, optimizer, scheduler and callbacks: ``(args_kwargs,
    trainer_kwargs)`` for TrainingArguments and the Trainer."""
    data, context = recipe.data, build.context
    task = context.task_record
    collator = build_component(registry, "collator",
                               data.get("collator") or task.collator_for(data["data"]), context)
    loss_fn = None
    if data.get("loss") is not None:
        loss_fn = MeanLoss(component_ref(data["loss"])[0],
                           build_component(registry, "loss", data["loss"], context))
    metric_fns = [(component_ref(ref)[0], build_component(registry, "metric", ref, context))
                  for ref in task.metrics_for(data.get("metrics"))]  # else the task's
    build.metric_fns = metric_fns

    args_kwargs = dict(context.training_args)
    trainer_kwargs = {}
    if task.takes_rewards:  # a list the schema requires: reward_funcs= and their weights
        trainer_kwargs["reward_funcs"], args_kwargs["reward_weights"] = build_rewards(
            registry, data.get("rewards") or [], context, build_component)
    args_kwargs["output_dir"] = context.output_dir
    args_kwargs.setdefault("seed", context.seed)
    for section in ("optimizer", "scheduler"):
        if data.get(section) is not None:
            _apply_settings(registry, section, data[section], build, args_kwargs,
                            trainer_kwargs)
    context.training_args = args_kwargs
    callbacks = [build_component(registry, "callback", ref, context)
                 for ref in data.get("callbacks") or []]
    args_kwargs["report_to"] = report_to_without_mlflow(args_kwargs.get("report_to"))
    args_kwargs.update(launch_arguments(recipe, build.cuda))  # deepspeed; use_cpu+gloo on CPU
    # length-grouped batches, precision, TF32, loader: where the recipe leaves them unset
    build.defaults = speed_defaults(data, args_kwargs, build.model, build.splits["train"])

    trainer_kwargs.update(
        model=build.model,
        train_dataset=build.splits["train"],
        eval_dataset=build.splits.get("eval"),
        processing_class=build.tokenizer,
        data_collator=collator,
        compute_loss_func=loss_fn,
        compute_metrics=make_compute_metrics(metric_fns, context) if metric_fns else None,
        callbacks=callbacks or None,
    )
    configure_trainer(task, context, metric_fns, args_kwargs, trainer_kwargs)
    return args_kwargs, trainer_kwargs


def _apply_settings(registry, section: str, ref, build: Build, args_kwargs: dict,
                    trainer_kwargs: dict) -> None:
    """An optimizer or scheduler component's settings (checked:
    :func:`~fturun.run.wiring.checked_settings`) into the TrainingArguments kwargs, the Trainer
    kwargs (``optimizer_cls_and_kwargs``) and the build (a schedule of its own; what ran)."""
    name = component_ref(ref)[0]
    build.context.training_args = dict(args_kwargs)  # what this factory sees
    result = checked_settings(section, name,
                              build_component(registry, section, ref, build.context))
    args_kwargs.update(result.get("training_args") or {})
    if result.get("optimizer_cls_and_kwargs") is not None:
        trainer_kwargs["optimizer_cls_and_kwargs"] = result["optimizer_cls_and_kwargs"]
    if result.get("scheduler") is not None:
        build.scheduler = (name, result["scheduler"])
    build.ran_params.update(what_ran(section, name, result))


def build_component(registry, kind: str, ref, context):
    """Call the factory of the component ``ref`` names as the contract says: with its params,
    the schema's defaults filled in (:meth:`~fturun.plugin.registry.Component.build`), and
    ``context``. A name that is not registered (or whose plugin is disabled or failed) is a
    :class:`RecipeRuntimeError` saying so."""
    name, params = component_ref(ref)
    try:
        component = registry.get(kind, name)
    except KeyError as exc:
        raise RecipeRuntimeError(exc.args[0]) from None
    return component.build(params, context)


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
    (``Task.metric_inputs``: arg-maxed class ids for classification), then merge
    what each metric function returns. A function with ``uses_loss`` also gets ``eval_loss``."""
    def compute_metrics(eval_pred):
        predictions, references = context.task_record.metric_inputs(eval_pred, context)
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


def make_trainer(build: Build):
    """The TrainingArguments and Trainer of a build; bad argument combinations are reported as
    :class:`RecipeRuntimeError`."""
    trainer_class, arguments_class = build.context.task_record.trainer_classes()
    try:
        args = arguments_class(**build.args_kwargs)
    except (ValueError, TypeError) as exc:
        raise RecipeRuntimeError(f"training: {exc}") from None
    trainer = trainer_class(args=args, **build.trainer_kwargs)
    loss = build.trainer_kwargs.get("compute_loss_func")
    if isinstance(loss, MeanLoss):
        loss.bind(trainer)
    if build.scheduler is not None:
        install_scheduler(trainer, *build.scheduler)
    install_length_sampler(trainer)  # group_by_length: lengths from Arrow, not a pass per row
    return trainer
