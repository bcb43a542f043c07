"""data (layer 3): the recipe's ``data`` section as train/eval/test datasets for the Trainer.

The pipeline, in order (each step is a ``datasets`` transform, so a file-backed source is cached
by fingerprint and a second run with the same recipe skips the work):

1. load ``data.train`` (and ``data.eval`` / ``data.test``) through the registered dataset sources
   (:mod:`.sources`); a list of ``data.train`` sources is mixed by weight after step 2
   (:mod:`.mixing`);
2. keep and rename the columns the task needs (``data.columns`` -> ``text``, ``text_pair``,
   ``labels``, ``target``) and drop rows with empty text, a warning saying how many
   (:mod:`.columns`);
3. the task's ``prepare`` before the model exists (classification: the label map, labels -> ids;
   token classification: the tag map, tags checked against the words);
4. carve ``data.split.eval`` / ``data.split.test`` out of the train source (seeded, optionally
   stratified), then ``max_*_samples`` (seeded shuffle, then the first N rows) (:mod:`.splits`);
5. the task's ``tokenize`` (truncation to ``data.max_length``; padding only for
   ``data.padding="max_length"``, else the collator pads each batch), once the room it needs is
   known to be free and the lengths fit the model (:mod:`.room`).

Between steps 4 and 5 a run reports on its data before the model loads (:mod:`.reporting`:
lengths, truncation, trained share, labels, duplicates, drops; ``data.limits``, :mod:`.limits`),
and ``data.preprocessed`` replaces steps 1-5 with splits tokenized before (:mod:`.preprocessed`).

Tokenizing needs the tokenizer, which comes with the model, and the model needs the label map
from step 3. So :func:`prepare_datasets` tokenizes only when ``context.tokenizer`` is already set;
the runner calls it first, builds the model, then calls :func:`tokenize_datasets`. What is
particular to a task lives in its :class:`fturun.plugin.tasks.Task` record (``prepare``,
``tokenize``,
the columns its rows have).
"""

from __future__ import annotations

from ..plugin.tasks import DEFAULT_MAX_LENGTH, TokenizeSettings
from .mixing import Mix, dataset_inputs
from .prepare import SAMPLE_ROWS, prepare_datasets, tokenize_datasets
from .room import check_model_positions, check_room, max_positions
from .sources import load_source
from .splits import SPLITS, split_train, subsample

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "Mix",
    "SAMPLE_ROWS",
    "SPLITS",
    "TokenizeSettings",
    "check_model_positions",
    "check_room",
    "dataset_inputs",
    "load_source",
    "max_positions",
    "prepare_datasets",
    "split_train",
    "subsample",
    "tokenize_datasets",
]
