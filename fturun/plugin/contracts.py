"""The plugin API's version and its typed contracts: what ``register`` takes and what each kind's
factory receives and returns, as Protocols and TypedDicts a plugin can type-check against.

Nothing here runs torch or transformers: their types appear in annotations only (strings, read
by a type checker, never imported at run time). :mod:`fturun.hookspecs` says in words what
these types say in signatures; :mod:`fturun.api` exports both.

The API's version and the range a plugin declares are in :mod:`fturun.plugin.version`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

if TYPE_CHECKING:  # annotations only: nothing heavy is imported at run time
    import datasets
    import torch
    import transformers

    from .context import BuildContext
    from .tasks import Task

# --- registration -----------------------------------------------------------------------------

#: a component's params: the recipe's ``params`` object, validated, with the schema's defaults
Params = Mapping[str, Any]


class Factory(Protocol):
    """``factory(params, context) -> component``: what ``register`` takes for every kind; the
    per-kind protocols below name what it returns."""

    def __call__(self, params: dict, context: BuildContext) -> Any: ...


class Register(Protocol):
    """The ``register`` a component hook receives: call it once per component."""

    def __call__(self, name: str, factory: Factory, params_schema: dict | None,
                 description: str) -> None: ...


class RegisterTask(Protocol):
    """The ``register`` of ``fturun_register_tasks``: call it once per :class:`Task` record."""

    def __call__(self, task: Task) -> None: ...


# --- what each kind's factory returns ---------------------------------------------------------


class DatasetFactory(Protocol):
    """``fturun_register_datasets``: the raw rows of one split."""

    def __call__(self, params: dict, context: BuildContext) -> datasets.Dataset: ...


class ModelFactory(Protocol):
    """``fturun_register_models``: the model (of ``context.task_record.model_class``, built with
    ``context.model_kwargs``) and its tokenizer."""

    def __call__(self, params: dict, context: BuildContext) -> tuple[
        transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]: ...


class AdapterFactory(Protocol):
    """``fturun_register_adapters``: ``context.model``, wrapped or changed."""

    def __call__(self, params: dict, context: BuildContext) -> torch.nn.Module: ...


class Collator(Protocol):
    """What a collator factory returns: a list of tokenized rows -> a batch of tensors."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]: ...


class CollatorFactory(Protocol):
    """``fturun_register_collators``."""

    def __call__(self, params: dict, context: BuildContext) -> Collator: ...


class LossFunction(Protocol):
    """What a loss factory returns: the *mean* loss over the labelled items of the micro-batch
    it is given (``reduction="mean"``); fturun scales it for gradient accumulation and several
    processes (see ``fturun_register_losses``)."""

    def __call__(self, outputs: Any, labels: torch.Tensor | None) -> torch.Tensor: ...


class LossFactory(Protocol):
    """``fturun_register_losses``."""

    def __call__(self, params: dict, context: BuildContext) -> LossFunction: ...


class MetricFunction(Protocol):
    """What a metric factory returns: ``{name: float}`` (names without ``eval_``). With the
    attribute ``uses_loss = True`` it is also called with ``eval_loss=``."""

    def __call__(self, predictions: Any, references: Any) -> dict[str, float]: ...


class MetricFactory(Protocol):
    """``fturun_register_metrics``."""

    def __call__(self, params: dict, context: BuildContext) -> MetricFunction: ...


class RewardFunction(Protocol):
    """What a reward factory returns: one score per completion (a float, or None where the
    reward does not apply), for ``prompts[i]`` / ``completions[i]`` and the row's other
    columns as keyword lists (``answer=[...]``); see ``fturun_register_rewards``."""

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list: ...


class RewardFactory(Protocol):
    """``fturun_register_rewards``."""

    def __call__(self, params: dict, context: BuildContext) -> RewardFunction: ...


class CallbackFactory(Protocol):
    """``fturun_register_callbacks``."""

    def __call__(self, params: dict, context: BuildContext) -> transformers.TrainerCallback: ...


class OptimizerSettings(TypedDict, total=False):
    """What an optimizer factory returns (one key or both).

    - ``training_args``: TrainingArguments to set (``optim``, ``optim_args``, ``weight_decay``);
    - ``optimizer_cls_and_kwargs``: ``(cls, kwargs)``; the Trainer calls ``cls(param_groups,
      **kwargs)`` with two groups that carry ``weight_decay`` (``training.weight_decay``, and
      0.0 for biases and norms) and no ``lr``: put ``lr`` in ``kwargs``.
    """

    training_args: dict[str, Any]
    optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]]


#: ``make_scheduler(optimizer, num_training_steps) -> LRScheduler`` (a scheduler's own schedule)
MakeScheduler = Callable[["torch.optim.Optimizer", int], "torch.optim.lr_scheduler.LRScheduler"]


class SchedulerSettings(TypedDict, total=False):
    """What a scheduler factory returns (one key or both).

    - ``training_args``: TrainingArguments to set (``lr_scheduler_type``,
      ``lr_scheduler_kwargs``, ``warmup_steps``);
    - ``scheduler``: :data:`MakeScheduler`, called once the optimizer exists.
    """

    training_args: dict[str, Any]
    scheduler: MakeScheduler


class OptimizerFactory(Protocol):
    """``fturun_register_optimizers``."""

    def __call__(self, params: dict, context: BuildContext) -> OptimizerSettings: ...


class SchedulerFactory(Protocol):
    """``fturun_register_schedulers``."""

    def __call__(self, params: dict, context: BuildContext) -> SchedulerSettings: ...


class RunTracker(Protocol):
    """``context.tracker``: the run's MLflow run, or a tracker that does nothing (``fturun
    check``, tracking off, ranks other than 0). Never None in a factory's context."""

    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, Any]) -> None: ...


__all__ = [
    "AdapterFactory", "CallbackFactory", "Collator",
    "CollatorFactory", "DatasetFactory", "Factory", "LossFactory", "LossFunction",
    "MakeScheduler", "MetricFactory", "MetricFunction", "ModelFactory", "OptimizerFactory",
    "OptimizerSettings", "Params", "Register", "RegisterTask", "RunTracker",
    "SchedulerFactory", "SchedulerSettings",
]
