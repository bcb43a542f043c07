"""The fixed sections of the recipe schema, as declarative JSON Schema tables. The component
sections are composed from the registry (:mod:`fturun.schema.compose`); everything here is the
same for every installation."""

from __future__ import annotations

from ..chat.conversation import CHAT_FORMATS, TRAIN_ON
from ..chat.templates import BUILTIN_TEMPLATES
from .data_report import LIMITS, PREPROCESSED

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: recipe section -> (component kind, is a list)
COMPONENT_SECTIONS = {
    "model": ("model", False),
    "adapter": ("adapter", False),
    "collator": ("collator", False),
    "loss": ("loss", False),
    "metrics": ("metric", True),
    "callbacks": ("callback", True),
    "optimizer": ("optimizer", False),
    "scheduler": ("scheduler", False),
    "rewards": ("reward", True),
}

#: component kinds whose references carry a ``weight`` beside ``name`` and ``params``
WEIGHTED_KINDS = {"reward": {
    "type": "number", "minimum": 0, "default": 1.0,
    "description": "this reward's weight in the sum each completion is scored with"}}


def definition_ref(name: str) -> dict:
    """A reference to ``$defs/<name>`` of the composed schema (a component kind, ``training``)."""
    return {"$ref": f"#/$defs/{name}"}


SCHEMA_KEY = {"type": "string", "description": "path or URL of this schema, for editors"}
DESCRIPTION = {"type": "string", "description": "what this recipe is for"}
EXTENDS = {"type": "string",
           "description": "a base recipe (path relative to this file) deep-merged under this one"}
SEED = {"type": "integer", "minimum": 0, "default": 42,
        "description": "seed for data splits, sampling and model initialisation"}

#: ``data.columns`` keys of the conversation formats (``data.format``)
CONVERSATION_COLUMNS = {
    "messages": {"type": "string", "description": "data.format messages/sharegpt: the column "
                                                  "of the turns (default 'messages' / "
                                                  "'conversations')"},
    **{key: {"type": "string", "default": key, "description": f"data.format {fmt}: the "
                                                             f"{key} column"}
       for fmt, keys in (("alpaca", ("instruction", "input", "output")),
                         ("prompt_completion", ("prompt", "completion"))) for key in keys},
}

SPLIT_SIZE = {
    "description": "a fraction of the source (0 < x < 1) or a number of rows (>= 1)",
    "type": "number",
    "exclusiveMinimum": 0,
}

#: ``data.train`` as a list: several sources mixed by weight (:mod:`fturun.data.mixing`)
TRAIN_MIX = {
    "type": "array",
    "minItems": 1,
    "x-fturun-hint": 'list at least one source: [{"dataset": ..., "weight": 1}]',
    "description": "several sources mixed by weight with datasets.interleave_datasets "
                   "(seeded with the recipe's seed; see data.stopping_strategy)",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["dataset", "weight"],
        "properties": {
            "dataset": definition_ref("dataset"),
            "weight": {"type": "number", "exclusiveMinimum": 0,
                       "x-fturun-hint": "give the source a positive weight (its share of the "
                                        "mix is its weight over the sum of the weights) or "
                                        "remove it from data.train",
                       "description": "this source's share of the mix is weight / sum of "
                                      "the weights"},
            "max_rows": {"type": "integer", "minimum": 1,
                         "description": "use at most this many rows of the source (a seeded "
                                        "sample) before mixing"},
        },
    },
}

DATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["train"],
    "properties": {
        "train": {"anyOf": [definition_ref("dataset"), TRAIN_MIX],
                  "description": "the train source: a dataset, or a list of weighted "
                                 "sources to mix"},
        "stopping_strategy": {
            "enum": ["first_exhausted", "all_exhausted"], "default": "first_exhausted",
            "description": "with a list of data.train sources, when the mix ends: "
                           "'first_exhausted' when one source runs out (no row repeats); "
                           "'all_exhausted' once every source was used whole (the others "
                           "repeat rows)"},
        "eval": definition_ref("dataset"),
        "test": definition_ref("dataset"),
        "split": {
            "type": "object",
            "description": "carve eval/test splits out of the train source",
            "additionalProperties": False,
            "properties": {
                "eval": SPLIT_SIZE,
                "test": SPLIT_SIZE,
                "stratify": {"type": "boolean", "default": False,
                             "description": "keep label proportions in each split"},
            },
        },
        "columns": {
            "type": "object",
            "description": "which source columns hold the inputs and the label",
            "additionalProperties": False,
            "properties": {
                "text": {"type": "string", "default": "text"},
                "text_pair": {"type": "string"},
                "label": {"type": "string", "default": "label"},
                "target": {"type": "string", "description": "seq2seq target text"},
                **CONVERSATION_COLUMNS,
            },
        },
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                   "uniqueItems": True,
                   "description": "label names in id order (default: sorted names found in the "
                                  "train data)"},
        "max_length": {"type": "integer", "minimum": 1, "default": 128,
                       "description": "tokens per example after truncation"},
        "padding": {"enum": ["longest", "max_length"], "default": "longest",
                    "description": "'longest' pads each batch to its longest example (fast); "
                                   "'max_length' pads every example to max_length"},
        "max_train_samples": {"type": "integer", "minimum": 1},
        "max_eval_samples": {"type": "integer", "minimum": 1},
        "max_test_samples": {"type": "integer", "minimum": 1},
        "block_size": {"type": "integer", "minimum": 2,
                       "description": "masked-lm/causal-lm: concatenate the tokenized texts and "
                                      "cut them into blocks of this many tokens (instead of one "
                                      "truncated row per text)"},
        "packing": {"type": "boolean", "default": False,
                    "description": "causal-lm: pack each batch's texts into one row without "
                                   "attention across them (no padding); the default collator "
                                   "becomes 'packing'"},
        "max_target_length": {"type": "integer", "minimum": 1,
                              "description": "seq2seq: tokens per target after truncation "
                                             "(default: max_length)"},
        "label_all_tokens": {"type": "boolean", "default": False,
                             "description": "token-classification: label every word piece of a "
                                            "word (training), not only the first"},
        "format": {"enum": list(CHAT_FORMATS),
                   "description": "causal-lm: the rows are conversations in this form, "
                                  "rendered with the chat template and trained on "
                                  "data.train_on: " + "; ".join(
                                      f"'{k}': {v}" for k, v in CHAT_FORMATS.items())},
        "chat_template": {"type": "string", "minLength": 1,
                          "description": "with data.format: a built-in chat template ("
                                         + ", ".join(BUILTIN_TEMPLATES) + ") or a .jinja "
                                         "file relative to the recipe (default: the "
                                         "tokenizer's own); its special tokens are added and "
                                         "the embeddings resized"},
        "fold_system": {"type": "boolean", "default": False,
                        "description": "with data.format: fold a leading system message into "
                                       "the first user turn (its text, a blank line, the "
                                       "user's), for chat templates without a system role "
                                       "(Gemma)"},
        "train_on": {"enum": list(TRAIN_ON), "default": "assistant",
                     "description": "with data.format: the tokens in the loss: 'assistant' "
                                    "(every assistant turn), 'last_assistant' (the last one), "
                                    "'all' (every token, prompts too)"},
        "limits": LIMITS,
        "preprocessed": PREPROCESSED,
    },
}

OUTPUT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "save_model": {"type": "boolean", "default": True,
                       "description": "save the final model and tokenizer"},
        "merge_adapter": {"type": "boolean", "default": False,
                          "description": "also save the adapter merged into the base model "
                                         "(LoRA)"},
        "overwrite": {"type": "boolean", "default": False,
                      "description": "a fresh run may replace another run's outputs in "
                                     "training.output_dir (its model is replaced only once the "
                                     "new one is saved); as --overwrite"},
    },
}

TRACKING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean", "default": True},
        "tracking_uri": {"type": "string",
                         "description": "default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                                        "in the working directory"},
        "experiment": {"type": "string", "minLength": 1},
        "run_name": {"type": "string", "minLength": 1},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "log_model": {"type": "boolean", "default": True,
                      "description": "log the model: model/ as an artifact and an MLflow Model "
                                     "(a transformers pipeline, merged when an adapter was "
                                     "trained) that loads, predicts and serves"},
        "registered_model_name": {"type": "string", "minLength": 1,
                                  "description": "register the MLflow Model under this name (a "
                                                 "new version per run)"},
        "registered_model_alias": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                                   "maxLength": 255,
                                   "description": "point this alias (e.g. champion: letters, "
                                                  "digits, '_', '-') at the new version when it "
                                                  "is at least as good as the alias's version "
                                                  "(see promote_on); needs "
                                                  "registered_model_name"},
        "promote_on": {
            "type": "object", "additionalProperties": False, "required": ["metric"],
            "description": "the metric a new version must match or beat for "
                           "registered_model_alias to move (default: "
                           "training.metric_for_best_model, else eval_loss)",
            "properties": {"metric": {"type": "string", "minLength": 1},
                           "greater_is_better": {"type": "boolean"}}},
        "system_metrics": {"type": "boolean", "default": True,
                           "description": "CPU, memory, disk, network (and GPU) metrics through "
                                          "MLflow's own monitor, every "
                                          "$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds "
                                          "(default 10)"},
    },
    "dependentRequired": {"registered_model_alias": ["registered_model_name"]},
}

AUTO = {"const": "auto"}
_INT_OR_AUTO = {"anyOf": [{"type": "integer", "minimum": 1}, AUTO]}
_BOOL_OR_AUTO = {"anyOf": [{"type": "boolean"}, AUTO]}
_OFFLOAD = {
    "type": "object",
    "properties": {
        "device": {"enum": ["none", "cpu", "nvme"]},
        "pin_memory": {"type": "boolean"},
        "nvme_path": {"type": "string"},
    },
}
DEEPSPEED_CONFIG = {
    "type": "object",
    "description": "a DeepSpeed config; 'auto' values are filled from 'training' by the Trainer",
    "properties": {
        "train_batch_size": _INT_OR_AUTO,
        "train_micro_batch_size_per_gpu": _INT_OR_AUTO,
        "gradient_accumulation_steps": _INT_OR_AUTO,
        "gradient_clipping": {"anyOf": [{"type": "number", "minimum": 0}, AUTO]},
        "steps_per_print": {"type": "integer", "minimum": 1},
        "wall_clock_breakdown": {"type": "boolean"},
        "fp16": {"type": "object", "properties": {"enabled": _BOOL_OR_AUTO}},
        "bf16": {"type": "object", "properties": {"enabled": _BOOL_OR_AUTO}},
        "optimizer": {"type": "object", "required": ["type"],
                      "properties": {"type": {"type": "string"}, "params": {"type": "object"}}},
        "scheduler": {"type": "object", "required": ["type"],
                      "properties": {"type": {"type": "string"}, "params": {"type": "object"}}},
        "zero_optimization": {
            "type": "object",
            "required": ["stage"],
            "properties": {
                "stage": {"enum": [0, 1, 2, 3],
                          "description": "0 off, 1 optimizer states, 2 + gradients, "
                                         "3 + parameters"},
                "offload_optimizer": _OFFLOAD,
                "offload_param": _OFFLOAD,
                "overlap_comm": {"type": "boolean"},
                "contiguous_gradients": {"type": "boolean"},
                "allgather_partitions": {"type": "boolean"},
                "reduce_scatter": {"type": "boolean"},
                "allgather_bucket_size": {"anyOf": [{"type": "number", "minimum": 1}, AUTO]},
                "reduce_bucket_size": {"anyOf": [{"type": "number", "minimum": 1}, AUTO]},
                "stage3_prefetch_bucket_size": {"anyOf": [{"type": "number", "minimum": 1},
                                                          AUTO]},
                "stage3_param_persistence_threshold": {"anyOf": [{"type": "number"}, AUTO]},
                "stage3_gather_16bit_weights_on_model_save": {"type": "boolean"},
                "sub_group_size": {"type": "number", "minimum": 1},
                "round_robin_gradients": {"type": "boolean"},
            },
        },
    },
}

#: the recipe's ``deepspeed`` key: an inline config (``$defs/deepspeed_config``) or a file path
DEEPSPEED = {
    "description": "DeepSpeed: a config object, or the path of a DeepSpeed JSON config "
                   "(relative to the recipe)",
    "anyOf": [{"type": "string", "minLength": 1}, definition_ref("deepspeed_config")],
}

_SPACE_ENTRY = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["float", "int", "categorical"]},
        "low": {"type": "number"},
        "high": {"type": "number"},
        "step": {"type": "number", "exclusiveMinimum": 0},
        "log": {"type": "boolean", "default": False},
        "choices": {"type": "array", "minItems": 1},
    },
    "allOf": [
        {"if": {"properties": {"type": {"enum": ["float", "int"]}}},
         "then": {"required": ["low", "high"]}},
        {"if": {"properties": {"type": {"const": "categorical"}}},
         "then": {"required": ["choices"]}},
    ],
}
SEARCH = {
    "type": "object",
    "description": "hyperparameter search with Optuna: every trial is a nested MLflow run",
    "required": ["space"],
    "properties": {
        "metric": {"type": "string", "description": "the eval metric to optimise (default: "
                                                    "training.metric_for_best_model, else loss)"},
        "direction": {"enum": ["maximize", "minimize"],
                      "description": "default: minimize for loss/perplexity, else maximize"},
        "n_trials": {"type": "integer", "minimum": 1, "default": 10},
        "timeout_minutes": {"type": "number", "exclusiveMinimum": 0,
                            "description": "stop starting trials after this long"},
        "sampler": {"enum": ["tpe", "random", "grid"], "default": "tpe"},
        "seed": {"type": "integer", "minimum": 0,
                 "description": "sampler seed (default: the recipe seed)"},
        "pruner": {"enum": ["none", "median", "hyperband", "successive_halving"],
                   "default": "median"},
        "pruner_warmup_steps": {"type": "integer", "minimum": 0, "default": 0,
                                "description": "steps before the median pruner prunes; the "
                                               "min_resource of hyperband/successive_halving"},
        "pruner_startup_trials": {"type": "integer", "minimum": 0,
                                  "description": "trials that finish before the median pruner "
                                                 "prunes (default: n_trials/4, at most 5)"},
        "enqueue": {"type": "array", "items": {"type": "object"},
                    "description": "trials to run first, e.g. the recipe's own values: "
                                   "[{\"training.learning_rate\": 2e-4}] (space keys; keys "
                                   "left out are sampled)"},
        "storage": {"type": "string", "description": "Optuna storage URL shared by several "
                                                     "processes or machines, e.g. "
                                                     "sqlite:///study.db or "
                                                     "postgresql://host/db"},
        "study_name": {"type": "string", "minLength": 1},
        "space": {
            "type": "object",
            "minProperties": 1,
            "description": "dotted recipe key -> distribution, e.g. "
                           "{\"training.learning_rate\": {\"type\": \"float\", "
                           "\"low\": 1e-5, \"high\": 1e-3, \"log\": true}}",
            "additionalProperties": _SPACE_ENTRY,
        },
    },
}

GENERATION = {
    "type": "object",
    "description": "causal-lm/seq2seq: how evaluation (seq2seq) and the sample generations at "
                   "the end of a run generate",
    "additionalProperties": False,
    "properties": {
        "max_new_tokens": {"type": "integer", "minimum": 1, "default": 32},
        "num_beams": {"type": "integer", "minimum": 1, "default": 1},
        "do_sample": {"type": "boolean", "default": False},
        "temperature": {"type": "number", "exclusiveMinimum": 0},
        "top_k": {"type": "integer", "minimum": 0},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "prompts": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "description": "prompts of the sample generations (default: the first "
                                   "eval rows)"},
        "num_samples": {"type": "integer", "minimum": 0, "default": 3,
                        "description": "sample generations written at the end (0: none)"},
        "eval_rows": {"type": "integer", "minimum": 0, "default": 16,
                      "description": "causal-lm with prompt/answer or conversation rows: at "
                                     "each evaluation, generate the answers of this many eval "
                                     "rows and score them (eval_rouge1/2/L, eval_bleu, "
                                     "eval_exact_match); 0: none"},
    },
}
