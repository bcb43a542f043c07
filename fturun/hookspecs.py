"""The hooks a fturun plugin implements (layer 2): the one module a plugin author reads.

A plugin is a module (or object) with functions decorated by ``fturun.api.hookimpl`` and named
like the hooks below; it imports that, and everything else it needs of fturun, from
:mod:`fturun.api` (plugin API version :data:`fturun.api.API_VERSION`; declare the range you
need as a module attribute, ``FTURUN_API = ">=1.0,<2"``: outside it the plugin is refused,
saying so). It is found through the ``fturun`` entry-point group::

    # pyproject.toml of your distribution
    [project.entry-points.fturun]
    my_plugin = "my_package.fturun_plugin"

**Registering.** Every component hook receives one argument, ``register``
(:class:`fturun.plugin.contracts.Register`), and calls it once per component::

    register(name, factory, params_schema, description)

- ``name``: what a recipe writes, e.g. ``"focal"``. Lowercase letters, digits, ``_`` and ``-``;
  unique across all plugins for its kind (a duplicate is refused and both plugins are named).
- ``factory``: a callable ``factory(params, context)`` (what it returns: per kind below). Keep
  heavy imports (torch, transformers, peft, ...) *inside* the factory: fturun imports plugin
  modules to validate recipes and must stay fast.
- ``params_schema``: a JSON Schema (Draft 2020-12) for the component's ``params``, an object
  schema (``None``: no params). Unless the schema says otherwise, fturun adds
  ``"additionalProperties": false`` (``"unevaluatedProperties": false`` when its properties
  come from ``allOf``/``anyOf``/``oneOf``/``if``/``$ref``), also to ``{"type": "object"}``
  without properties, which then takes no params: a typo in a recipe is an error with a "did
  you mean" suggestion. Write ``"additionalProperties": true`` to take any key. Give each
  property a ``type``, a ``description`` and, where there is one, a ``default`` (``fturun
  components`` shows them). A schema that is not valid Draft 2020-12 fails the plugin when it
  loads.
- ``description``: one line, shown by ``fturun components`` (required).

``fturun_register_tasks`` is the exception: its ``register(task)`` takes a
:class:`fturun.api.Task` record (see that hook).

**A factory's arguments.** ``params`` is the recipe's ``params`` object, validated against the
schema, with the schema's ``default`` of every property the recipe leaves out filled in (also
inside nested objects the recipe has; not inside ``anyOf``/``oneOf`` branches): state a default
once, in the schema, and read ``params["key"]``. ``context`` is a
:class:`fturun.api.BuildContext` (its docstring lists the fields); fields are filled in as the
runner builds the parts, in this order: datasets, tokenizer and model, adapter, collator, loss,
metrics, optimizer, scheduler, callbacks. ``context.tracker`` is never None: the run's MLflow
tracker, or one that does nothing (``fturun check``, tracking off, ranks other than 0).

**When factories run.** Once per run (``fturun RECIPE``, ``fturun check``, each search trial),
in *every* process of a multi-process launch: each process builds its own components; only
rank 0 tracks and writes the outputs. A recipe that validated but cannot run as written (a
missing file, params that do not fit the model) raises :class:`fturun.api.RecipeRuntimeError`
with a message saying what to change: the command prints it without a traceback and exits 1.
"""

from __future__ import annotations

import pluggy

PROJECT = "fturun"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fturun_register_datasets(register):
    """Register dataset sources (``data.train``, ``data.eval``, ``data.test`` in a recipe).

    Factory contract: ``factory(params, context) -> datasets.Dataset`` with the raw,
    untokenized rows, any columns (:class:`fturun.plugin.contracts.DatasetFactory`). Called once per
    split that names it, before the model and tokenizer exist; the main process of a launch
    goes first and fills the ``datasets`` cache, the others then read it. The runner maps the
    columns (``data.columns``), drops empty rows, lets the task prepare the labels, splits,
    subsamples and tokenizes. Not a ``DatasetDict`` (take a ``split`` param) and not a
    streaming dataset.
    """


@hookspec
def fturun_register_models(register):
    """Register model loaders (``model`` in a recipe).

    Factory contract: ``factory(params, context) -> (model, tokenizer)``
    (:class:`fturun.plugin.contracts.ModelFactory`). Called once the datasets are prepared:
    ``context.task_record.model_class`` names the transformers auto class to use (e.g.
    ``"AutoModelForSequenceClassification"``), and ``context.model_kwargs`` holds what the
    data decided (``num_labels``, ``id2label``, ``label2id`` for classification, or what a
    plugin task's ``prepare`` set): pass it on to the model. The tokenizer then tokenizes
    the datasets.

    Optionally the factory carries ``factory.load_tokenizer(params, context) -> tokenizer``:
    the tokenizer alone, without the weights. The data report (``fturun data``, and every
    run before its model loads: lengths, truncation, ``data.limits``) uses it; without it
    the report of a run waits for the model, and ``fturun data`` says it cannot run.
    """


@hookspec
def fturun_register_adapters(register):
    """Register parameter-efficient adapters (``adapter`` in a recipe).

    Factory contract: ``factory(params, context) -> model`` wrapping or changing
    ``context.model`` (:class:`fturun.plugin.contracts.AdapterFactory`), for example a
    ``peft.PeftModel`` (``context.task_record.peft_task_type`` is peft's task type). Raise
    :class:`fturun.api.RecipeRuntimeError` with a clear message when the params do not fit the
    model (e.g. target modules that match nothing).
    """


@hookspec
def fturun_register_collators(register):
    """Register data collators (``collator`` in a recipe; else the task's default).

    Factory contract: ``factory(params, context) -> collator`` where ``collator(features) ->
    batch`` turns a list of tokenized rows (dicts) into a dict of tensors
    (:class:`fturun.plugin.contracts.Collator`), for example a
    ``transformers.DataCollatorWithPadding``
    built with ``context.tokenizer``; ``context.model`` exists. Keep the ``labels`` key: the
    loss and the metrics read it.
    """


@hookspec
def fturun_register_losses(register):
    """Register training losses (``loss`` in a recipe).

    Factory contract: ``factory(params, context) -> loss`` where ``loss(outputs, labels) ->
    torch.Tensor`` (:class:`fturun.plugin.contracts.LossFunction`) returns the **plain mean** over
    the
    labelled items (labels other than -100) of the micro-batch it is given, a 0-dim tensor,
    as ``torch.nn.functional.cross_entropy(..., reduction="mean")`` does; 0 (not NaN) for a
    batch without labelled items. ``outputs`` is the model's output for the batch (a
    ``ModelOutput``: ``outputs["logits"]`` or ``outputs.logits``); ``labels`` is the batch's
    ``labels`` tensor (taken out of the inputs, so the model computes no loss of its own), or
    None when the batch has none. ``context.train_dataset`` and ``context.label_names`` are
    there (e.g. class weights from label frequencies).

    fturun makes that mean right under gradient accumulation and across processes (the
    Trainer alone would not: it expects a ``compute_loss_func`` to return a sum divided by
    ``num_items_in_batch`` and takes a mean as ``gradient_accumulation_steps`` times too large,
    and the number of processes times too large in a launch): the loss is given to the Trainer
    as ``compute_loss_func`` inside ``fturun.run.wiring.MeanLoss``, which multiplies it by
    ``items in this micro-batch / items in the whole optimizer step`` (items counted as the
    Trainer counts ``num_items_in_batch``: every accumulated micro-batch, and every process with
    ``average_tokens_across_devices``, the default). Each optimizer step then follows the
    gradient of the mean over all the items of the step, so that ``per_device_train_batch_size
    4 x gradient_accumulation_steps 2``, ``8 x 1`` and 2 processes ``x 4`` train alike. Without
    labels, a training step's loss is divided by the micro-batches accumulated. The logged
    ``loss`` is the mean of the step, as for the model's own loss; ``eval_loss`` is your mean
    per eval batch, averaged.
    """


@hookspec
def fturun_register_metrics(register):
    """Register evaluation metrics (``metrics`` in a recipe, a list; else the task's default).

    Factory contract: ``factory(params, context) -> metric_fn`` where ``metric_fn(predictions,
    references) -> dict`` (:class:`fturun.plugin.contracts.MetricFunction`) maps metric names
    (without
    the ``eval_`` prefix) to floats. Called at each evaluation with what the task's
    ``metric_inputs`` makes of the eval predictions: arg-maxed class ids (sequence
    classification), token ids at the labelled positions (masked/causal LM), lists of tag names
    per sentence (token classification), decoded texts (seq2seq), or a plugin task's. A function
    with the attribute ``uses_loss = True`` is also called with ``eval_loss=`` (e.g.
    perplexity). Return the component's name as the key (or keys starting with ``<name>_``); a
    metric returning other keys declares them as a regular expression in its params schema,
    ``"x-fturun-keys": "f1_.*"``, so that ``metric_for_best_model`` can name them.
    """


@hookspec
def fturun_register_callbacks(register):
    """Register Trainer callbacks (``callbacks`` in a recipe, a list).

    Factory contract: ``factory(params, context) -> transformers.TrainerCallback``
    (:class:`fturun.plugin.contracts.CallbackFactory`). Built last, when the context holds
    everything
    (model, datasets, ``training_args`` with the optimizer's and scheduler's settings). The
    callback runs in every process of a launch: write files where ``state.is_world_process_zero``;
    log through ``context.tracker`` (``log_metrics(dict, step)``, ``log_artifact(path)``,
    ``set_tags(dict)``), which does nothing under ``fturun check``, with tracking off and off
    rank 0, so a callback never needs to test for it.
    """


@hookspec
def fturun_register_optimizers(register):
    """Register optimizers (``optimizer`` in a recipe).

    Factory contract: ``factory(params, context) -> dict``
    (:class:`fturun.plugin.contracts.OptimizerSettings`) with one key or both:

    - ``"training_args": {...}``: TrainingArguments to set, such as ``optim``,
      ``optim_args`` or ``weight_decay`` (names TrainingArguments does not have are refused);
    - ``"optimizer_cls_and_kwargs": (cls, kwargs)``: the optimizer class. The Trainer calls
      ``cls(param_groups, **kwargs)`` with two parameter groups, ``{"params": [...],
      "weight_decay": training.weight_decay}`` (the weights) and ``{"params": [...],
      "weight_decay": 0.0}`` (biases and norm layers). The groups carry no ``lr``: put ``lr``
      in ``kwargs`` (``context.training_arg("learning_rate")`` follows
      ``training.learning_rate``; the scheduler then sets each group's lr every step). A
      ``weight_decay`` in ``kwargs`` is overridden by the groups': return it as
      ``training_args`` instead (or, as the example plugin's Lion does, have your class
      replace the groups' value).

    ``context.training_args`` holds the TrainingArguments kwargs so far (the recipe's
    ``training``; defaults through ``context.training_arg(name)``). The run's MLflow params say
    what ran: ``args.optim`` is ``"NAME (module.Class)"`` and ``args.optim_args`` the kwargs
    for an optimizer class.
    """


@hookspec
def fturun_register_schedulers(register):
    """Register learning-rate schedulers (``scheduler`` in a recipe).

    Factory contract: ``factory(params, context) -> dict``
    (:class:`fturun.plugin.contracts.SchedulerSettings`) with one key or both:

    - ``"training_args": {...}``: TrainingArguments to set, typically ``lr_scheduler_type``,
      ``lr_scheduler_kwargs`` and ``warmup_steps``;
    - ``"scheduler": make_scheduler``: a schedule of your own;
      ``make_scheduler(optimizer, num_training_steps) -> torch.optim.lr_scheduler.LRScheduler``
      is called once the optimizer exists (``num_training_steps``: the run's optimizer steps),
      and the scheduler is stepped once per optimizer step; its ``state_dict`` is saved in each
      checkpoint and loaded by ``--resume``. The MLflow param ``args.lr_scheduler_type`` then
      says ``"NAME (module.make_scheduler)"``.

    Called after the optimizer factory: ``context.training_args`` includes what it returned.
    """


@hookspec
def fturun_register_rewards(register):
    """Register reward functions (``rewards`` in a recipe, a list; API 1.3), for a task that
    takes them (``Task.takes_rewards``, e.g. ``grpo`` of fturun-trl).

    Factory contract: ``factory(params, context) -> reward`` where ``reward(prompts,
    completions, **columns) -> list`` (:class:`fturun.plugin.contracts.RewardFunction`) scores
    a batch of generated completions. It receives ``prompts[i]`` and ``completions[i]`` (text,
    or lists of ``{role, content}`` messages for conversation rows) and, as keyword lists of
    the same length, the row's other columns (e.g. ``answer=[...]``, the reference an exact
    match compares with; ``row=[...]``, the row's index in its split) and whatever else the
    Trainer passes (take ``**kwargs``). It returns **one float per completion**, or ``None``
    for a completion the reward does not apply to (that reward is then left out of the
    completion's sum). Built once the model and datasets exist (``context.model``,
    ``context.tokenizer``).

    In the recipe each reference may carry a ``weight`` (default 1): a completion's reward is
    the weighted sum of its rewards, and each reward's mean over the step's completions is
    logged as ``rewards/<name>/mean`` (``<name>-2`` for a name listed twice). fturun checks
    every call: a reward that raises, returns another number of scores than completions, or a
    score that is not a finite number (NaN, inf, text) stops the run with a
    :class:`fturun.api.RecipeRuntimeError` naming the reward and the row, and the MLflow run
    ends FAILED.
    """


@hookspec
def fturun_register_tasks(register):
    """Register tasks (``task`` in a recipe): one :class:`fturun.api.Task` record per task.

    Record contract: call ``register(task)`` once per task with a ``Task``
    (:class:`fturun.plugin.contracts.RegisterTask`; the record's docstring describes every field).
    Its ``name`` is what a recipe writes (lowercase letters, digits, ``_``, ``-``; unique
    across plugins) and ``description`` one line. What the run takes from it:

    - the model and the Trainer: ``model_class`` (a transformers auto class name, e.g.
      ``"AutoModelForSequenceClassification"``: what model factories load),
      ``peft_task_type`` (peft's ``TaskType`` name or None), ``trainer`` (``"trainer"``, or
      ``"seq2seq"`` for ``Seq2SeqTrainer`` with ``predict_with_generate``, or since API 1.1 a
      callable returning the task's own ``(Trainer class, TrainingArguments class)``, with
      ``training_settings``, the schema of the settings that class adds to ``training``, and
      ``trainer_metrics``, the eval metrics its Trainer logs itself), ``mean_loss``
      (True: the model's own loss is a plain mean, scaled as a loss component's is),
      ``argmax_logits`` (keep arg-max ids instead of logits at evaluation);
    - the recipe: ``default_collator`` and ``packed_collator`` (``data.packing``),
      ``default_metrics`` (without ``metrics``) and ``always_metrics`` (added to any list),
      references to registered components; ``data_keys``, the task-only ``data`` settings it
      accepts (of ``block_size``, ``packing``, ``max_target_length``, ``label_all_tokens``);
      ``generates`` (a ``generation`` section, sample generations);
    - the rows: ``labels`` (``"classes"``: one label per row, which the task's ``prepare``
      turns into what the model learns; ``"tags"``: one per word; None: no label column) and
      ``target`` (rows carry a target text); ``data.columns`` maps the source columns to
      ``text``, ``text_pair``, ``labels``, ``target``; or ``columns`` (API 1.1), the task's own
      text columns read instead (``("prompt", "chosen", "rejected")``).

    The callables, in the order a run calls them (keep their heavy imports inside them):

    1. ``prepare(sources, recipe_data, context) -> sources``: the columns mapped, before the
       split; ``sources`` is ``{"train": Dataset, "eval"?: ..., "test"?: ...}``,
       ``recipe_data`` the recipe's ``data`` section. Decide the labels here: set
       ``context.label_names`` and ``context.model_kwargs`` (what the model factory passes to
       the model, e.g. ``{"num_labels": 1}``). Default: the sources unchanged.
    2. ``tokenize(ds, tokenizer, settings, split) -> ds``: once the model exists, per split;
       ``settings`` is a :class:`fturun.api.TokenizeSettings` (``max_length``, ``padding``,
       ...). Return the model's inputs and ``labels``, without the text columns; use
       ``ds.map`` with plain arguments so ``datasets`` caches it.
    3. ``metric_inputs(eval_pred, context) -> (predictions, references)``: at each evaluation,
       from the Trainer's ``EvalPrediction``: what every metric function receives.
    4. ``write_predictions(prediction, context, path) -> bool`` (or None): with a test split,
       after training, on rank 0: write ``test_predictions.jsonl`` (``fturun.api.write_lines``).
    5. ``generate_samples(model, tokenizer, context) -> [{"prompt", "generated",
       "reference"}]`` (with ``generates``): a few generations at the end of a run.

    A record that is not valid, or a name another plugin registered, is reported and the whole
    plugin skipped.
    """
