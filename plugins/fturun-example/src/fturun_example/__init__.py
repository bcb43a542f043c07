"""fturun-example: one component of several kinds, as a template for writing fturun plugins.

This module is what the ``fturun`` entry point names (``example = "fturun_example"``): it holds
the ``@hookimpl`` functions and the params schemas, and imports nothing heavy. The factories live
in the submodules and import torch, transformers, datasets and matplotlib only when called.

- loss ``poly1``: PolyLoss (Leng et al. 2022), cross entropy + epsilon * (1 - p_t)
- metric ``per_class_f1``: one F1 score per label, ``f1_<label>``
- callback ``confusion_matrix``: a confusion-matrix PNG of the eval data after training
- dataset ``sqlite``: rows of a SELECT query on a SQLite database
- optimizer ``lion``: the Lion optimizer (Chen et al. 2023) in pure torch
"""

from __future__ import annotations

from fturun.api import hookimpl

from .callbacks import confusion_matrix
from .datasets import SELECT_PATTERN, load_sqlite
from .losses import poly1
from .metrics import per_class_f1
from .optimizers import lion

__version__ = "0.1.0"

#: the fturun plugin API versions this plugin works with (fturun refuses it outside them)
FTURUN_API = ">=1.0,<2"

POLY1_SCHEMA = {"type": "object", "properties": {
    "epsilon": {"type": "number", "minimum": -1, "default": 1.0,
                "description": "weight of the (1 - p_t) term; 0 is plain cross entropy"}}}

PER_CLASS_F1_SCHEMA = {"type": "object", "properties": {}, "x-fturun-keys": r"f1_.+"}

CONFUSION_MATRIX_SCHEMA = {"type": "object", "properties": {
    "normalize": {"type": "boolean", "default": True,
                  "description": "show each row (true label) as fractions instead of counts"},
    "filename": {"type": "string", "pattern": r"^[^/\\]+\.png$",
                 "default": "confusion_matrix.png",
                 "description": "file name of the PNG in the output dir"}}}

SQLITE_SCHEMA = {"type": "object", "required": ["path", "query"], "properties": {
    "path": {"type": "string", "minLength": 1,
             "description": "the database file (relative to the recipe's folder works too; "
                            "'package:NAME/sub/path' names a file inside a Python package)"},
    "query": {"type": "string", "pattern": SELECT_PATTERN,
              "description": "one SELECT statement; each result column becomes a dataset column "
                             "(the database is opened read-only)"}}}

LION_SCHEMA = {"type": "object", "properties": {
    "lr": {"type": "number", "exclusiveMinimum": 0,
           "description": "default: training.learning_rate (Lion wants 3-10x less than AdamW)"},
    "betas": {"type": "array", "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
              "minItems": 2, "maxItems": 2, "default": [0.9, 0.99],
              "description": "interpolation (beta1) and momentum decay (beta2)"},
    "weight_decay": {"type": "number", "minimum": 0,
                     "description": "decoupled weight decay of the weights (not biases and "
                                    "LayerNorm); default: training.weight_decay"}}}


@hookimpl
def fturun_register_losses(register):
    """The example loss."""
    register("poly1", poly1, POLY1_SCHEMA,
             "PolyLoss (Poly-1): cross entropy + epsilon * (1 - p_true)")


@hookimpl
def fturun_register_metrics(register):
    """The example metric."""
    register("per_class_f1", per_class_f1, PER_CLASS_F1_SCHEMA,
             "F1 score of every label, reported as f1_<label>")


@hookimpl
def fturun_register_callbacks(register):
    """The example callback."""
    register("confusion_matrix", confusion_matrix, CONFUSION_MATRIX_SCHEMA,
             "Draw a confusion-matrix PNG of the eval data after training (logged to MLflow)")


@hookimpl
def fturun_register_datasets(register):
    """The example dataset source."""
    register("sqlite", load_sqlite, SQLITE_SCHEMA,
             "Rows of a SELECT query on a SQLite database file")


@hookimpl
def fturun_register_optimizers(register):
    """The example optimizer."""
    register("lion", lion, LION_SCHEMA, "Lion optimizer (sign momentum; Chen et al. 2023)")
