"""The build context handed to every component factory: what the runner knows so far."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import RecipeRuntimeError, UsageError
from ..recipe.paths import resolve_path

__all__ = ["BuildContext", "resolve_path"]


@dataclass
class BuildContext:
    """Runtime objects for factories. Fields are filled in as the runner builds the parts, in
    this order: datasets, tokenizer and model, adapter, collator, loss, metrics, optimizer,
    scheduler, callbacks (:mod:`fturun.hookspecs`); a factory reads only what exists at its turn.

    - ``recipe``: the resolved recipe (a dict); ``recipe_dir``: its folder (relative paths);
      ``output_dir``: where the run writes; ``seed``;
    - ``task``: the task's name; ``task_record``: its :class:`fturun.plugin.tasks.Task`;
    - ``label_names``, ``model_kwargs`` (set by the task's ``prepare``; a model factory passes
      ``model_kwargs`` on), ``train_dataset`` / ``eval_dataset`` (tokenized once the model
      exists), ``samples`` (a few raw rows per split);
    - ``tokenizer``, ``model`` (after the adapter: the wrapped model);
    - ``training_args``: the TrainingArguments keyword arguments so far, a dict: the recipe's
      ``training`` section as written (TrainingArguments' defaults are *not* in it: read a
      value with :meth:`training_arg`), plus ``output_dir`` and ``seed`` from the optimizer on,
      plus what the optimizer factory returned as ``training_args`` for the scheduler and the
      callbacks;
    - ``tracker``: the run's tracker (:class:`fturun.plugin.contracts.RunTracker`); it does nothing
      under ``fturun check``, with tracking off and on ranks other than 0, and is never None;
    - ``log``: ``log(message)`` prints on the main process only;
    - :meth:`resolve_path` and :meth:`resolve_model`: the file, or the trained model (a
      folder, a run, ``models:/NAME@ALIAS``), that a component's params name.
    """

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
    #: ``log_metrics(dict, step)``, ``set_tags(dict)``; a no-op tracker when tracking is off,
    #: under ``fturun check`` and off rank 0 (the runner always sets one)
    tracker: Any = None
    #: a few raw rows per split before tokenization (``{"eval": [{"text": ...}, ...]}``), e.g.
    #: the prompts of a run's sample generations
    samples: dict = field(default_factory=dict)
    #: with a list of ``data.train`` sources: the realised mix (:class:`fturun.data.mixing.Mix`:
    #: each source's weight and the rows it gave); None for one source
    train_mix: Any = None
    #: ids of the tokens the chat template added to the tokenizer, for which the model's
    #: embeddings were resized (new, untrained rows): an adapter trains them too
    added_token_ids: list = field(default_factory=list)
    #: what the data pipeline read and dropped, per source (:class:`fturun.data.drops.DataLog`:
    #: the data report's rows read / dropped with the reason and the first row numbers)
    data_log: Any = None
    log: Any = print
    #: ``model_resolver(ref) -> folder``: how :meth:`resolve_model` finds a trained model that
    #: is not a folder (a run id, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``m-...``
    #: on the run's tracking server); a run sets it, None outside a run (folders only)
    model_resolver: Any = None
    _task_record: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def task_record(self):
        """The :class:`fturun.plugin.tasks.Task` of ``task``: the one the run set (from its
        registry, :func:`fturun.data.prepare_datasets` does), else the one the default plugins
        register. :class:`fturun.core.errors.RecipeRuntimeError` for an unknown task."""
        record = self._task_record
        if record is None or record.name != self.task:
            from .manager import default_plugins
            from .tasks import get_task

            record = get_task(default_plugins().registry, self.task)
            self._task_record = record
        return record

    @task_record.setter
    def task_record(self, record) -> None:
        self._task_record = record

    def training_arg(self, key: str):
        """The value of TrainingArguments ``key`` this run uses: ``training_args[key]``, else
        the default of the installed transformers (e.g. ``learning_rate`` 5e-05). A key
        TrainingArguments does not have is a ``KeyError``."""
        if key in self.training_args:
            return self.training_args[key]
        from ..schema import training_schema

        properties = training_schema()["properties"]
        if key not in properties:
            raise KeyError(f"TrainingArguments has no argument {key!r}")
        return properties[key].get("default")

    def resolve_path(self, path: str) -> str:
        """:func:`resolve_path` relative to the recipe's folder (``package:NAME/sub/path``: a
        file inside an installed package)."""
        return resolve_path(path, self.recipe_dir)

    def resolve_model(self, ref: str) -> str:
        """The folder on this machine of the trained model ``ref`` names: a folder (resolved
        as :meth:`resolve_path`), else, in a run, a run id, ``models:/NAME@ALIAS``,
        ``models:/NAME/VERSION`` or a logged model id (``m-...``) on the recipe's tracking
        server, downloaded (an adapter folder when it was trained with one: it holds
        ``adapter_config.json``). :class:`fturun.core.errors.RecipeRuntimeError` saying what a
        reference can be when ``ref`` names nothing."""
        path = self.resolve_path(ref)
        if os.path.isdir(path):
            return path
        if self.model_resolver is None:
            raise RecipeRuntimeError(f"model '{ref}': no such folder here or in the recipe's "
                                     f"folder ({self.recipe_dir})")
        try:
            return self.model_resolver(ref)
        except UsageError as exc:
            raise RecipeRuntimeError(str(exc)) from None
