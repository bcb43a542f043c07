"""Tasks as data: one :class:`Task` record per task, looked up by name in ``Registry.tasks``.

A record says everything a task changes in a run: the model's auto class, the PEFT task type,
the Trainer classes, the default collator and metrics, the data settings it accepts, how its rows
are prepared and tokenized, what the metric functions receive, and what it writes (test
predictions, sample generations). Records are registered through the
``fturun_register_tasks`` hook (:mod:`fturun.hookspecs`), like any component, so a plugin can
add a task; fturun's own five live in :mod:`fturun.builtin.tasks`.

This module imports nothing heavy (``fturun validate`` reads the records): the callables of a
record import torch, numpy or datasets inside.

The recipe's ``generation`` section (``max_new_tokens``, ``num_beams``, ``do_sample``,
``temperature``, ``top_k``, ``top_p``, ``prompts``, ``num_samples``, ``eval_rows``) sets how a
generating task evaluates (seq2seq; a causal LM's answers to ``eval_rows`` eval prompts) and
makes its sample generations (:func:`generation_settings`, :func:`generation_eval_rows`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import PluginError, RecipeRuntimeError
from ..core.suggest import suggest
from ..recipe.refs import component_name
from .registry import NAME_PATTERN

DEFAULT_MAX_LENGTH = 128
DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_NUM_SAMPLES = 3
DEFAULT_EVAL_ROWS = 16  # eval rows whose answers a generating task generates and scores

#: ``Task.trainer`` -> (Trainer class, TrainingArguments class) in transformers; a plugin task
#: may instead give a callable returning its own classes
TRAINERS = {
    "trainer": ("Trainer", "TrainingArguments"),
    "seq2seq": ("Seq2SeqTrainer", "Seq2SeqTrainingArguments"),
}

#: tasks of fturun's first-party plugin distributions -> the distribution that registers each,
#: so that a recipe naming one without it installed is told what to install
FIRST_PARTY_TASKS = {"preference": ("fturun-trl", "plugins/fturun-trl")}

#: the data settings only some tasks accept (``Task.data_keys``); the schema describes them
DATA_KEYS = frozenset({"block_size", "packing", "max_target_length", "label_all_tokens",
                       "format", "chat_template", "train_on", "fold_system"})

#: ``Task.labels``: what a row's label is, if it has one
LABEL_KINDS = ("classes", "tags", None)


@dataclass(frozen=True)
class TokenizeSettings:
    """What tokenization needs from the recipe's ``data`` section (``Task.tokenize`` gets one):
    plain values only, so that ``datasets`` can fingerprint the transforms and reuse their
    cache."""

    max_length: int = DEFAULT_MAX_LENGTH
    padding: str | bool = False
    block_size: int | None = None
    max_target_length: int | None = None
    label_all_tokens: bool = False
    label_names: tuple = ()
    #: conversation rows (``data.format``): the ``messages`` column, rendered with the
    #: tokenizer's chat template (``chat_template`` says which; its sha256 keys the cache),
    #: trained on the turns ``train_on`` names (:mod:`fturun.chat.conversation`)
    chat_format: str | None = None
    train_on: str = "assistant"
    chat_template: str | None = None
    chat_template_sha256: str | None = None


def _unchanged(sources: dict, recipe_data: dict, context) -> dict:
    """The default ``Task.prepare``: the sources as they are (no labels to map)."""
    return sources


@dataclass(frozen=True)
class Task:
    """One task (a frozen record): what a recipe's ``"task": NAME`` changes in the run.

    The model and the Trainer:

    - ``model_class``: the transformers auto class *name*, e.g.
      ``"AutoModelForSequenceClassification"`` (the ``pretrained``/``from_config`` models use it);
    - ``peft_task_type``: the peft ``TaskType`` name (``"SEQ_CLS"``), or None;
    - ``trainer``: ``"trainer"`` or ``"seq2seq"`` (``Seq2SeqTrainer`` with
      ``predict_with_generate``: evaluation generates, with the ``generation`` settings); or a
      callable ``() -> (Trainer class, TrainingArguments class)`` (imports inside it) for a
      task with Trainer classes of its own, such as TRL's. The Trainer is called as
      ``Trainer(args=..., model=, train_dataset=, eval_dataset=, processing_class=,
      data_collator=, compute_loss_func=, compute_metrics=, callbacks=``, and
      ``optimizer_cls_and_kwargs=`` / ``preprocess_logits_for_metrics=`` when set``)``: a
      Trainer that takes other arguments adapts them in its own ``__init__``;
    - ``training_settings``: the JSON Schema ``properties`` of the settings such an arguments
      class adds to TrainingArguments (``beta`` of TRL's ``DPOConfig``); a recipe of the task
      writes them in ``training`` (searchable like any key), other tasks' recipes are refused
      them. Generate them with ``fturun.api.arguments_schema(cls, base=TrainingArguments)``
      (the generator of the ``training`` schema), commit them with the plugin, test them fresh;
    - ``trainer_metrics``: eval metric names the task's Trainer logs itself (without
      ``eval_``, e.g. ``"rewards/margins"``): ``metric_for_best_model`` and
      ``search.metric`` may name them;
    - ``mean_loss``: the head computes a plain mean loss (False where the loss honours the
      Trainer's ``num_items_in_batch``, as causal LMs do);
    - ``argmax_logits``: evaluation keeps the arg-max ids of each batch instead of its logits
      (``preprocess_logits_for_metrics``), for vocabulary- or tag-sized outputs;
    - ``pipeline_task``: the transformers pipeline task of the trained model
      (``"text-classification"``), as which the run's MLflow Model is logged; None: the run
      logs no MLflow Model, only ``model/``.

    The recipe:

    - ``default_collator``: the collator reference used when the recipe has no ``collator``;
      ``packed_collator``: the one used with ``data.packing`` (None: the task cannot pack);
    - ``default_metrics``: metric references used when the recipe has no ``metrics``;
      ``always_metrics``: added to any list (``perplexity`` for language models);
    - ``data_keys``: the task-only ``data`` settings it accepts (a subset of :data:`DATA_KEYS`;
      the others are schema errors in its recipes);
    - ``generates``: it accepts a ``generation`` section and makes sample generations;
    - ``takes_rewards`` (API 1.3): its Trainer takes reward functions, the recipe's
      ``rewards`` (required then, refused for other tasks): built, checked and passed as
      ``reward_funcs=`` with ``training.reward_weights`` (:mod:`fturun.run.rewards`).

    The rows (``data.columns`` maps them to ``text``, ``text_pair``, ``labels``, ``target``):

    - ``columns``: the task's own text columns (e.g. ``("prompt", "chosen", "rejected")``),
      read instead of ``text``/``text_pair``: each is required in every split, mapped by
      ``data.columns.<name>`` (default: the same name), cast to text, and rows where one is
      empty are dropped; empty (the default): the standard columns;
    - ``keep_columns`` (API 1.3): the rows keep the source's other columns beside the task's
      own, as they are (a reward reads its reference answer there);

    - ``labels``: ``"classes"`` (one label per row; test rows may have none), ``"tags"`` (one
      label per word; the text may be a list of words), or None (no label column);
    - ``target``: rows carry a target text the model learns to produce.

    The callables (heavy imports inside them, never at module level):

    - ``prepare(sources, recipe_data, context) -> sources``: before the split, e.g. the label
      map (sets ``context.label_names`` and ``context.model_kwargs``);
    - ``tokenize(ds, tokenizer, settings, split) -> ds``: settings is a
      :class:`TokenizeSettings`;
    - ``metric_inputs(eval_pred, context) -> (predictions, references)``: what the metric
      functions receive;
    - ``write_predictions(prediction, context, path) -> bool``: the test predictions as JSON
      lines (through :func:`fturun.core.io.write_lines`); None: the task writes none;
    - ``generate_samples(model, tokenizer, context) -> [{"prompt", "generated",
      "reference"}]``: a few generations at the end of a run (when ``generates``);
    - ``answer_prompts(model, tokenizer, context, rows) -> [{"prompt", "generated",
      "reference"}]``: the answers generated to the prompts of raw eval ``rows`` (up to
      ``generation.eval_rows`` of them), scored at each evaluation with ``generation_metrics``
      (metric references) and logged as ``eval_*`` metrics; None: no generation-based eval.
    """

    name: str
    description: str
    model_class: str
    tokenize: Callable
    metric_inputs: Callable
    prepare: Callable = _unchanged
    peft_task_type: str | None = None
    trainer: str | Callable = "trainer"
    default_collator: Any = "padding"
    packed_collator: Any = None
    default_metrics: tuple = ()
    always_metrics: tuple = ()
    data_keys: frozenset = frozenset()
    generates: bool = False
    mean_loss: bool = True
    argmax_logits: bool = False
    pipeline_task: str | None = None
    labels: str | None = None
    target: bool = False
    write_predictions: Callable | None = None
    generate_samples: Callable | None = None
    answer_prompts: Callable | None = None
    generation_metrics: tuple = ()
    training_settings: dict = None
    trainer_metrics: tuple = ()
    columns: tuple = ()
    keep_columns: bool = False
    takes_rewards: bool = False

    def __post_init__(self):
        # lists from a plugin become the tuple / frozenset the record promises
        object.__setattr__(self, "default_metrics", tuple(self.default_metrics or ()))
        object.__setattr__(self, "always_metrics", tuple(self.always_metrics or ()))
        object.__setattr__(self, "generation_metrics", tuple(self.generation_metrics or ()))
        object.__setattr__(self, "data_keys", frozenset(self.data_keys or ()))
        object.__setattr__(self, "trainer_metrics", tuple(self.trainer_metrics or ()))
        object.__setattr__(self, "columns", tuple(self.columns or ()))
        if self.training_settings is None:
            object.__setattr__(self, "training_settings", {})

    def trainer_classes(self):
        """``(Trainer class, TrainingArguments class)`` of the task, imported here (or what
        the task's own ``trainer`` callable returns)."""
        if callable(self.trainer):
            return tuple(self.trainer())
        import transformers

        trainer, arguments = TRAINERS[self.trainer]
        return getattr(transformers, trainer), getattr(transformers, arguments)

    def collator_for(self, data_section: dict | None):
        """The collator reference for a recipe without ``collator``: ``packed_collator`` with
        ``data.packing``, else ``default_collator``."""
        if (data_section or {}).get("packing") and self.packed_collator is not None:
            return self.packed_collator
        return self.default_collator

    def metrics_for(self, recipe_metrics) -> list:
        """The metric references a run computes: the recipe's ``metrics`` (a list), else
        ``default_metrics``; plus each of ``always_metrics`` not already named."""
        refs = list(recipe_metrics) if isinstance(recipe_metrics, list) \
            else list(self.default_metrics)
        named = {component_name(ref) for ref in refs}
        return refs + [ref for ref in self.always_metrics if component_name(ref) not in named]

    @property
    def words(self) -> bool:
        """The text column may hold a list of words per row (labels are tags)."""
        return self.labels == "tags"

    @property
    def test_labels_optional(self) -> bool:
        """Test rows without a label are predicted only (no test metrics)."""
        return self.labels == "classes"


def check_task(task, plugin: str) -> Task:
    """``task`` when it is a valid :class:`Task`; else :class:`PluginError` saying what is
    wrong (``plugins.py`` then skips the plugin)."""
    if not isinstance(task, Task):
        raise PluginError(plugin, f"register() of fturun_register_tasks takes a fturun.api.Task, "
                                  f"not {type(task).__name__}")
    name = task.name
    problems = []
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.append("the name is invalid: use lowercase letters, digits, '_' and '-'")
    if not isinstance(task.description, str) or not task.description.strip() \
            or "\n" in task.description.strip():
        problems.append("a one-line description is required")
    if not isinstance(task.model_class, str) or not task.model_class.startswith("Auto"):
        problems.append(f"model_class {task.model_class!r} is not a transformers auto class "
                        "name such as 'AutoModelForSequenceClassification'")
    if not callable(task.trainer) and task.trainer not in TRAINERS:
        problems.append(f"trainer {task.trainer!r} is neither one of {', '.join(TRAINERS)} nor "
                        "a callable returning (Trainer class, TrainingArguments class)")
    problems += _check_own_parts(task)
    if task.pipeline_task is not None and not isinstance(task.pipeline_task, str):
        problems.append(f"pipeline_task {task.pipeline_task!r} is neither None nor a "
                        "transformers pipeline task name such as 'text-classification'")
    if task.labels not in LABEL_KINDS:
        problems.append(f"labels {task.labels!r} is not 'classes', 'tags' or None")
    if not task.data_keys <= DATA_KEYS:
        problems.append(f"data_keys {sorted(task.data_keys - DATA_KEYS)} are not data "
                        f"settings fturun knows ({', '.join(sorted(DATA_KEYS))})")
    for field_name in ("prepare", "tokenize", "metric_inputs"):
        if not callable(getattr(task, field_name)):
            problems.append(f"{field_name} is not callable")
    for field_name in ("write_predictions", "generate_samples", "answer_prompts"):
        value = getattr(task, field_name)
        if value is not None and not callable(value):
            problems.append(f"{field_name} is neither None nor callable")
    if task.generates and task.generate_samples is None:
        problems.append("generates=True needs generate_samples")
    if ("packing" in task.data_keys) != (task.packed_collator is not None):
        problems.append("data_keys has 'packing' exactly when packed_collator is set")
    refs = [task.default_collator, *task.default_metrics, *task.always_metrics,
            *task.generation_metrics]
    if task.packed_collator is not None:
        refs.append(task.packed_collator)
    problems += [f"{ref!r} is not a component reference ('name' or {{'name', 'params'}})"
                 for ref in refs if component_name(ref) is None]
    if problems:
        raise PluginError(plugin, f"task {name!r}: " + "; ".join(problems))
    return task


def _check_own_parts(task: Task) -> list:
    """What is wrong with a record's ``training_settings``, ``trainer_metrics`` and
    ``columns``."""
    problems = []
    settings = task.training_settings
    if not isinstance(settings, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in settings.items()):
        problems.append("training_settings is not a dict of setting name -> JSON Schema")
    if not all(isinstance(m, str) and m and not m.startswith("eval_")
               for m in task.trainer_metrics):
        problems.append("trainer_metrics are metric names without the eval_ prefix")
    if not all(isinstance(c, str) and NAME_PATTERN.match(c) for c in task.columns) or \
            len(set(task.columns)) != len(task.columns):
        problems.append("columns are distinct names of lowercase letters, digits and '_'")
    elif set(task.columns) & {"text", "text_pair", "label", "labels", "target"}:
        problems.append("columns name the task's own columns, not text, text_pair, label or "
                        "target (leave columns empty to read those)")
    elif task.columns and (task.labels is not None or task.target):
        problems.append("a task with its own columns has labels=None and target=False")
    return problems


def install_hint(name) -> str | None:
    """What to install for task ``name`` when a first-party plugin distribution registers it
    (:data:`FIRST_PARTY_TASKS`), else None."""
    if name not in FIRST_PARTY_TASKS:
        return None
    distribution, folder = FIRST_PARTY_TASKS[name]
    return (f"it comes with the plugin distribution {distribution}, which is not installed: "
            f"pip install {distribution} (from a fturun checkout: pip install {folder})")


def get_task(registry, name: str) -> Task:
    """The registered task ``name``; :class:`RecipeRuntimeError` with the supported ones (and
    the closest name) when there is none."""
    tasks = getattr(registry, "tasks", {})
    try:
        return tasks[name]
    except (KeyError, TypeError):
        why = registry.why_unavailable("task", name) if hasattr(registry, "unavailable") \
            else None
        why = why or install_hint(name)
        if why:
            raise RecipeRuntimeError(f"task '{name}' is not registered: {why}") from None
        supported = ", ".join(sorted(tasks)) or "none"
        raise RecipeRuntimeError(
            f"task '{name}' is not supported yet (supported: {supported})"
            f"{suggest(name, tasks)}; set 'task' to one of those") from None


def generation_settings(recipe: dict, encoder_decoder: bool = False) -> dict:
    """The recipe's ``generation`` section with its defaults, as ``generate()`` kwargs (the
    prompts and the number of samples apart). For an ``encoder_decoder`` the length is given
    as ``max_length`` (the new tokens and the decoder's start token): the Seq2SeqTrainer sets
    a default ``max_length`` on the generation config after its first step, and
    ``max_new_tokens`` beside it makes every later ``generate()`` warn that both are set."""
    section = dict(recipe.get("generation") or {})
    new_tokens = section.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    kwargs = {"max_length": new_tokens + 1} if encoder_decoder else \
        {"max_new_tokens": new_tokens}
    kwargs.update(num_beams=section.get("num_beams", 1),
                  do_sample=section.get("do_sample", False))
    for key in ("temperature", "top_k", "top_p"):
        if key in section:
            kwargs[key] = section[key]
    return kwargs


def generation_eval_rows(recipe: dict) -> int:
    """``generation.eval_rows``: how many eval rows a task with ``answer_prompts`` answers and
    scores at each evaluation (:data:`DEFAULT_EVAL_ROWS`; 0: none)."""
    return int((recipe.get("generation") or {}).get("eval_rows", DEFAULT_EVAL_ROWS))


def argmax_logits(logits, labels):
    """``preprocess_logits_for_metrics`` of a task with ``argmax_logits``: the arg-max
    token/tag ids of a batch instead of its logits."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def loss_from_eval_pred(eval_pred):
    """The eval loss (mean of the per-example batch losses), or None when not gathered."""
    import numpy as np

    losses = getattr(eval_pred, "losses", None)
    if losses is None:
        return None
    losses = np.asarray(losses, dtype="float64").reshape(-1)
    losses = losses[np.isfinite(losses)]
    return float(losses.mean()) if losses.size else None


def configure_trainer(task: Task, context, metric_fns, args_kwargs: dict,
                      trainer_kwargs: dict) -> None:
    """What ``task`` sets in the TrainingArguments and Trainer kwargs: the eval loss for
    loss-based metrics (``uses_loss``), arg-maxed logits, and generation for a seq2seq
    Trainer (``predict_with_generate``, the ``generation`` settings on the model's
    generation config)."""
    if any(getattr(fn, "uses_loss", False) for _, fn in metric_fns):
        include = args_kwargs.get("include_for_metrics") or []
        args_kwargs["include_for_metrics"] = list(dict.fromkeys([*include, "loss"]))
    if metric_fns and task.argmax_logits:
        trainer_kwargs["preprocess_logits_for_metrics"] = argmax_logits
    if task.trainer == "seq2seq":
        args_kwargs["predict_with_generate"] = True
        config = getattr(context.model, "generation_config", None)
        if config is not None:
            for key, value in generation_settings(context.recipe, encoder_decoder=True).items():
                setattr(config, key, value)
