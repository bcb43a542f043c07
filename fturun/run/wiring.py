"""What the runner does with what loss, optimizer and scheduler factories return, so that the
contracts of :mod:`fturun.hookspecs` hold inside the Trainer:

- a loss returns the plain mean over its micro-batch; :class:`MeanLoss` scales it so that every
  optimizer step sees the mean over all the items of the step, under gradient accumulation and
  across processes (the Trainer does not divide a ``compute_loss_func`` result by
  ``gradient_accumulation_steps``: it expects a sum divided by ``num_items_in_batch``);
- an optimizer or scheduler returns settings (:func:`checked_settings`), applied to the
  TrainingArguments and the Trainer; a scheduler's own schedule is installed with
  :func:`install_scheduler`;
- the ``args.*`` params a run logs say what really ran (:func:`what_ran`), not the
  TrainingArguments field a component replaced.
"""

from __future__ import annotations

import weakref

from ..core.errors import RecipeRuntimeError

#: what each section's factory may return (``fturun.plugin.contracts.OptimizerSettings`` /
#: ``SchedulerSettings``)
SETTINGS_KEYS = {"optimizer": ("training_args", "optimizer_cls_and_kwargs"),
                 "scheduler": ("training_args", "scheduler")}


class MeanLoss:
    """The Trainer's ``compute_loss_func`` around a loss component's ``loss(outputs, labels)``.

    The component returns the mean over the labelled items of the micro-batch it is given. With
    labels, the result is multiplied by ``items here / items in the whole step`` (items: labels
    other than -100, counted as the Trainer counts ``num_items_in_batch``: over every
    accumulated micro-batch and, with ``average_tokens_across_devices`` (the default), over every
    process; the Trainer multiplies by the number of processes and DDP averages): the step's
    gradient is that of the mean over all its items. Without labels (or a count), a training
    step divides by the micro-batches accumulated: the mean of the micro-batch means.
    """

    def __init__(self, name: str, loss_fn):
        self.name, self.loss_fn = name, loss_fn
        self._trainer = None

    def bind(self, trainer) -> None:
        """The Trainer whose steps this loss computes (its accumulation, how it counts)."""
        self._trainer = weakref.ref(trainer)

    def __call__(self, outputs, labels, num_items_in_batch=None):
        import torch

        loss = self.loss_fn(outputs, labels)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            got = f"a tensor of shape {tuple(loss.shape)}" if torch.is_tensor(loss) \
                else type(loss).__name__
            raise RecipeRuntimeError(
                f"loss '{self.name}' returned {got}; a loss returns one number, a 0-dim tensor: "
                "the mean over the batch's labelled items")
        trainer = self._trainer() if self._trainer is not None else None
        if num_items_in_batch is not None and torch.is_tensor(labels):
            return loss * (self._items(labels, trainer) / num_items_in_batch)
        if trainer is not None and torch.is_grad_enabled():
            steps = getattr(trainer, "current_gradient_accumulation_steps", None) \
                or trainer.args.gradient_accumulation_steps
            return loss / steps
        return loss

    @staticmethod
    def _items(labels, trainer):
        """Labelled items of this micro-batch, counted as the Trainer counts the step's (a
        causal LM's loss shifts its labels: position 0 is never a target)."""
        if trainer is not None and getattr(trainer, "_loss_shifts_labels", False):
            labels = labels[..., 1:]
        return labels.ne(-100).sum()


def checked_settings(section: str, name: str, result) -> dict:
    """What an optimizer or scheduler factory returned, checked against its contract; a
    :class:`RecipeRuntimeError` naming the component and what it may return otherwise."""
    allowed = SETTINGS_KEYS[section]
    shape = " and/or ".join(f'"{key}"' for key in allowed)
    if result is None:
        result = {}
    if not isinstance(result, dict) or not set(result) <= set(allowed):
        raise RecipeRuntimeError(
            f"{section} '{name}' returned {result!r}; a {section} factory returns a dict with "
            f"{shape} (see fturun_register_{section}s in fturun/hookspecs.py)")
    problem = _settings_problem(result)
    if problem:
        raise RecipeRuntimeError(f"{section} '{name}': {problem}")
    return result


def _settings_problem(result: dict) -> str | None:
    from ..schema import training_schema

    args = result.get("training_args", {})
    if not isinstance(args, dict):
        return f"training_args must be a dict of TrainingArguments, not {type(args).__name__}"
    unknown = sorted(set(args) - set(training_schema()["properties"]))
    if unknown:
        return f"training_args has {', '.join(unknown)}, which TrainingArguments does not have"
    pair = result.get("optimizer_cls_and_kwargs")
    if pair is not None and not (isinstance(pair, tuple) and len(pair) == 2
                                 and callable(pair[0]) and isinstance(pair[1], dict)):
        return f"optimizer_cls_and_kwargs must be a tuple (cls, kwargs dict), not {pair!r}"
    if "scheduler" in result and not callable(result["scheduler"]):
        return ("scheduler must be a callable make_scheduler(optimizer, num_training_steps) "
                f"-> LRScheduler, not {result['scheduler']!r}")
    return None


def install_scheduler(trainer, name: str, make) -> None:
    """Make ``trainer`` create its scheduler with a scheduler component's
    ``make(optimizer, num_training_steps)``, once its optimizer exists (as the Trainer's own
    ``create_scheduler`` does; a resumed run then loads the scheduler's state into it)."""

    def create_scheduler(num_training_steps: int, optimizer=None):
        if trainer.lr_scheduler is None:
            scheduler = make(optimizer if optimizer is not None else trainer.optimizer,
                             num_training_steps)
            if not (callable(getattr(scheduler, "step", None))
                    and callable(getattr(scheduler, "state_dict", None))):
                raise RecipeRuntimeError(
                    f"scheduler '{name}': make_scheduler returned {scheduler!r}, not a "
                    "torch.optim.lr_scheduler.LRScheduler")
            trainer.lr_scheduler = scheduler
            trainer._created_lr_scheduler = True  # re-created on the next train(), as its own
        return trainer.lr_scheduler

    trainer.create_scheduler = create_scheduler


def qualified_name(obj) -> str:
    """``module.QualifiedName`` of a class or function."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def what_ran(section: str, name: str, result: dict) -> dict:
    """The ``args.*`` params that say what ran when a component replaced a TrainingArguments
    choice: ``args.optim`` (and ``args.optim_args``) for an optimizer class,
    ``args.lr_scheduler_type`` for a scheduler's own schedule."""
    if section == "optimizer" and result.get("optimizer_cls_and_kwargs") is not None:
        cls, kwargs = result["optimizer_cls_and_kwargs"]
        return {"args.optim": f"{name} ({qualified_name(cls)})",
                "args.optim_args": ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))}
    if section == "scheduler" and result.get("scheduler") is not None:
        return {"args.lr_scheduler_type": f"{name} ({qualified_name(result['scheduler'])})"}
    return {}
