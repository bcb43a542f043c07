"""The build context handed to every component factory: what the runner knows so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .paths import resolve_path

__all__ = ["BuildContext", "resolve_path"]


@dataclass
class BuildContext:
    """Runtime objects for factories. Fields are filled in as the runner builds the parts (see
    :mod:`fturun.hookspecs` for the order); a factory reads only what exists at its turn.

    ``task`` is the task's name; ``task_record`` its :class:`fturun.tasks.Task` (model class,
    PEFT task type, ...)."""

    recipe: dict
    task: str = "sequence-classification"
    recipe_dir: str = "."
    output_dir: str = "outputs"
    seed: int = 42
    tokenizer: Any = None
    model: Any = None
    model_kwargs: dict = field(default_factory=dict)
    label_names: list | None = None
    train_dataset: Any = None
    eval_dataset: Any = None
    training_args: dict = field(default_factory=dict)
    #: the run's MLflow tracker: ``log_artifact(path, artifact_path=None)``,
    #: ``log_metrics(dict, step)``, ``set_tags(dict)``; does nothing when tracking is off
    tracker: Any = None
    #: a few raw rows per split before tokenization (``{"eval": [{"text": ...}, ...]}``), e.g.
    #: the prompts of a run's sample generations
    samples: dict = field(default_factory=dict)
    log: Any = print
    _task_record: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def task_record(self):
        """The :class:`fturun.tasks.Task` of ``task``: the one the run set (from its
        registry, :func:`fturun.data.prepare_datasets` does), else the one the default plugins
        register. :class:`fturun.errors.RecipeRuntimeError` for an unknown task."""
        record = self._task_record
        if record is None or record.name != self.task:
            from .plugins import default_plugins
            from .tasks import get_task

            record = get_task(default_plugins().registry, self.task)
            self._task_record = record
        return record

    @task_record.setter
    def task_record(self, record) -> None:
        self._task_record = record

    def resolve_path(self, path: str) -> str:
        """:func:`resolve_path` relative to the recipe's folder."""
        return resolve_path(path, self.recipe_dir)
