"""The hooks a fturun plugin implements: the one module a plugin author needs to read.

A plugin is a module (or object) with functions decorated by ``fturun.hookimpl`` and named like the
hooks below; it imports that, and everything else it needs of fturun, from :mod:`fturun.api`. It
is found through the ``fturun`` entry-point group::

    # pyproject.toml of your distribution
    [project.entry-points.fturun]
    my_plugin = "my_package.fturun_plugin"

Every hook receives one argument, ``register``, and calls it once per component::

    register(name, factory, params_schema, description)

- ``name``: what a recipe writes, e.g. ``"focal"``. Lowercase letters, digits, ``_`` and ``-``;
  unique across all plugins of the same kind (a duplicate is refused and both plugins are named).
- ``factory``: a callable ``factory(params, context)`` (contract per kind below). Keep heavy imports
  (torch, transformers, peft, ...) *inside* the factory: fturun imports plugin modules to validate
  recipes and must stay fast.
- ``params_schema``: a JSON Schema (Draft 2020-12) object for the component's ``params``. fturun
  adds ``additionalProperties: false`` when the schema does not say otherwise, so a typo in a recipe
  is an error with a "did you mean" suggestion.
- ``description``: one line, shown by ``fturun components``.

Tasks are records, not components: ``fturun_register_tasks`` calls ``register(task)`` with a
:class:`fturun.api.Task` (see that hook).

``params`` is the validated ``params`` object of the recipe with the schema's defaults *not* filled
in: use ``params.get(key, default)``. ``context`` is a :class:`fturun.context.BuildContext`; its
fields (``recipe``, ``task``, ``task_record``, ``tokenizer``, ``model``, ``output_dir``,
``label_names``, ``train_dataset`` ...) are filled in as the runner gets to them, in this order:
datasets, tokenizer and model, adapter, collator, loss, metrics, optimizer, scheduler, callbacks.
"""

from __future__ import annotations

import pluggy

PROJECT = "fturun"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fturun_register_datasets(register):
    """Register dataset sources (``data.train``, ``data.eval``, ``data.test`` in a recipe).

    Factory contract: ``factory(params, context) -> datasets.Dataset`` with the raw, untokenized
    rows. The runner maps columns, turns labels into ids, splits, subsamples and tokenizes.
    """


@hookspec
def fturun_register_models(register):
    """Register model loaders (``model`` in a recipe).

    Factory contract: ``factory(params, context) -> (model, tokenizer)``.
    ``context.task_record.model_class`` names the transformers auto class to use;
    ``context.model_kwargs`` holds what the data decided (``num_labels``, ``id2label``,
    ``label2id`` for classification) and must be passed on to the model.
    """


@hookspec
def fturun_register_adapters(register):
    """Register parameter-efficient adapters (``adapter`` in a recipe).

    Factory contract: ``factory(params, context) -> model`` wrapping ``context.model`` (for
    example a ``peft.PeftModel``). Raise :class:`fturun.errors.RecipeRuntimeError` with a clear
    message when the params do not fit the model (e.g. target modules that match nothing).
    """


@hookspec
def fturun_register_collators(register):
    """Register data collators (``collator`` in a recipe).

    Factory contract: ``factory(params, context) -> callable(list_of_features) -> batch``, for
    example a ``transformers.DataCollatorWithPadding`` built with ``context.tokenizer``.
    """


@hookspec
def fturun_register_losses(register):
    """Register training losses (``loss`` in a recipe).

    Factory contract: ``factory(params, context) -> loss_fn(outputs, labels,
    num_items_in_batch=None) -> torch.Tensor``; it is passed to the Trainer as
    ``compute_loss_func``. ``context.train_dataset`` and ``context.label_names`` are available
    (e.g. to compute class weights from label frequencies).
    """


@hookspec
def fturun_register_metrics(register):
    """Register evaluation metrics (``metrics`` in a recipe, a list).

    Factory contract: ``factory(params, context) -> metric_fn(predictions, references) -> dict``
    where the dict maps metric names (without the ``eval_`` prefix) to floats. What the
    function receives follows the task (``context.task_record.metric_inputs``): arg-maxed
    class ids (sequence classification), token ids at the labelled positions (masked/causal LM),
    lists of tag names per sentence (token classification), decoded texts (seq2seq). A function
    with the attribute ``uses_loss = True`` is also called with ``eval_loss=`` (e.g.
    perplexity). Return the component's name as the key (or
    keys starting with ``<name>_``); a metric returning other keys declares them as a regular
    expression in its params schema, ``"x-fturun-keys": "f1_.*"``, so that
    ``metric_for_best_model`` can name them.
    """


@hookspec
def fturun_register_callbacks(register):
    """Register Trainer callbacks (``callbacks`` in a recipe, a list).

    Factory contract: ``factory(params, context) -> transformers.TrainerCallback``.
    """


@hookspec
def fturun_register_optimizers(register):
    """Register optimizers (``optimizer`` in a recipe).

    Factory contract: ``factory(params, context) -> dict`` with ``"training_args": {...}``
    (settings for TrainingArguments, such as ``optim``/``optim_args``/``weight_decay``),
    ``"optimizer_cls_and_kwargs": (cls, kwargs)`` (passed to the Trainer), or both.
    """


@hookspec
def fturun_register_schedulers(register):
    """Register learning-rate schedulers (``scheduler`` in a recipe).

    Factory contract: ``factory(params, context) -> {"training_args": {...}}``, settings for
    TrainingArguments, typically ``lr_scheduler_type``, ``lr_scheduler_kwargs`` and
    ``warmup_steps``.
    """


@hookspec
def fturun_register_tasks(register):
    """Register tasks (``task`` in a recipe): one :class:`fturun.api.Task` record per task.

    Record contract: call ``register(task)`` once per task with a ``Task`` (see its docstring
    for every field). Its ``name`` is what a recipe writes (lowercase letters, digits, ``_``,
    ``-``; unique across plugins). ``model_class`` names a transformers auto class,
    ``trainer`` is ``"trainer"`` or ``"seq2seq"``, ``labels`` ``"classes"``, ``"tags"`` or
    None, ``data_keys`` a subset of ``block_size``, ``packing``, ``max_target_length``,
    ``label_all_tokens``; collator and metric references name registered components. The
    callables run during a run, in this order: ``prepare(sources, recipe_data, context)``
    before the split, ``tokenize(ds, tokenizer, settings, split)`` once the model exists,
    ``metric_inputs(eval_pred, context)`` at each evaluation, then
    ``write_predictions(prediction, context, path)`` and ``generate_samples(model,
    tokenizer, context)`` at the end. Keep their heavy imports inside them. A record that is
    not valid, or a name another plugin registered, is reported and the whole plugin skipped.
    """
