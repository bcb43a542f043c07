"""Turn the recipe's ``data`` section into train/eval/test datasets the Trainer can use.

The pipeline, in order (each step is a ``datasets`` transform, so a file-backed source is cached
by fingerprint and a second run with the same recipe skips the work):

1. load ``data.train`` (and ``data.eval`` / ``data.test``) through the registered dataset sources;
2. keep and rename the columns the task needs (``data.columns`` -> ``text``, ``text_pair``,
   ``labels``) and drop rows with empty text;
3. task preprocessing before the model exists (classification: the label map, labels -> ids);
4. carve ``data.split.eval`` / ``data.split.test`` out of the train source (seeded, optionally
   stratified), then ``max_*_samples`` (seeded shuffle, then the first N rows);
5. tokenize (truncation to ``data.max_length``; padding only for ``data.padding="max_length"``,
   else the collator pads each batch).

Tokenizing needs the tokenizer, which comes with the model, and the model needs the label map
from step 3. So :func:`prepare_datasets` tokenizes only when ``context.tokenizer`` is already set;
the runner calls it first, builds the model, then calls :func:`tokenize_datasets`.

Each task has one :class:`TaskPreprocessing` (label handling before the split, tokenization
after); only sequence classification is implemented so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import RecipeRuntimeError

SPLITS = ("train", "eval", "test")
DEFAULT_MAX_LENGTH = 128


# --------------------------------------------------------------------------------------------
# public entry points


def prepare_datasets(recipe_data: dict, registry, context) -> dict:
    """Build the datasets of a recipe's ``data`` section: ``{"train": ds, "eval": ds?, "test":
    ds?}`` (only the splits that exist).

    Sets ``context.label_names``, ``context.model_kwargs`` (``num_labels``, ``id2label``,
    ``label2id`` for classification), ``context.train_dataset`` and ``context.eval_dataset``.
    The datasets are tokenized when ``context.tokenizer`` is set, else call
    :func:`tokenize_datasets` once the tokenizer exists. Raises :class:`RecipeRuntimeError` with
    what to change when the data does not fit the recipe.
    """
    task = context.task
    preprocessing = task_preprocessing(task)
    seed = context.seed

    sources = {split: load_source(recipe_data[split], split, registry, context)
               for split in SPLITS if recipe_data.get(split) is not None}
    columns = recipe_data.get("columns") or {}
    sources = {split: select_columns(ds, split, columns, preprocessing, context)
               for split, ds in sources.items()}
    sources = preprocessing.prepare(sources, recipe_data, context)

    splits = split_train(sources, recipe_data.get("split") or {}, seed, preprocessing, context)
    for split in SPLITS:
        limit = recipe_data.get(f"max_{split}_samples")
        if split in splits and limit is not None:
            splits[split] = subsample(splits[split], limit, seed)
    for split, ds in splits.items():
        if len(ds) == 0:
            raise RecipeRuntimeError(
                f"the {split} data is empty after dropping empty rows, splitting and "
                f"subsampling; check data.{split}, data.split and data.max_{split}_samples")
    context.log("data: " + ", ".join(f"{split} {len(ds):,} rows" for split, ds in splits.items()))

    if context.tokenizer is not None:
        splits = tokenize_datasets(splits, recipe_data, context)
    _set_context_datasets(splits, context)
    return splits


def tokenize_datasets(splits: dict, recipe_data: dict, context) -> dict:
    """Tokenize prepared datasets with ``context.tokenizer`` (see :func:`prepare_datasets`)."""
    if context.tokenizer is None:
        raise RecipeRuntimeError("internal: tokenize_datasets needs context.tokenizer")
    preprocessing = task_preprocessing(context.task)
    max_length = recipe_data.get("max_length", DEFAULT_MAX_LENGTH)
    padding = "max_length" if recipe_data.get("padding") == "max_length" else False
    splits = {split: preprocessing.tokenize(ds, context.tokenizer, max_length, padding, split)
              for split, ds in splits.items()}
    _set_context_datasets(splits, context)
    return splits


def task_preprocessing(task: str) -> "TaskPreprocessing":
    """The preprocessing of ``task``; :class:`RecipeRuntimeError` when it is not supported yet."""
    try:
        return TASK_PREPROCESSING[task]
    except KeyError:
        supported = ", ".join(sorted(TASK_PREPROCESSING))
        raise RecipeRuntimeError(f"task '{task}' is not supported yet (supported: {supported}); "
                                 "set 'task' to one of those") from None


def subsample(ds, limit: int, seed: int):
    """At most ``limit`` rows of ``ds``: a seeded shuffle, then the first ``limit`` rows."""
    if limit >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(int(limit)))


# --------------------------------------------------------------------------------------------
# steps shared by every task


def component_ref(ref) -> tuple:
    """``(name, params)`` of a component reference: ``"name"`` or ``{"name", "params"}``."""
    if isinstance(ref, str):
        return ref, {}
    return ref["name"], dict(ref.get("params") or {})


def load_source(ref, split: str, registry, context):
    """Rows of one dataset source through its registered factory."""
    from datasets import Dataset

    name, params = component_ref(ref)
    try:
        component = registry.get("dataset", name)
    except KeyError as exc:
        raise RecipeRuntimeError(f"data.{split}: {exc.args[0]}") from None
    ds = component.factory(params, context)
    if not isinstance(ds, Dataset):
        raise RecipeRuntimeError(
            f"data.{split}: dataset '{name}' returned a {type(ds).__name__}, not a "
            "datasets.Dataset (a DatasetDict needs params.split; streaming datasets are not "
            "supported)")
    return ds


def select_columns(ds, split: str, columns: dict, preprocessing, context):
    """Keep the input and label columns the task needs under their standard names, and drop
    rows with empty text (logged)."""
    present = list(ds.column_names)
    wanted = {}  # source column -> standard name
    text_col = columns.get("text", "text")
    if text_col not in present:
        raise RecipeRuntimeError(
            f"data.{split}: text column '{text_col}' not found; the columns are: "
            f"{', '.join(present)}. Set data.columns.text to the column holding the text")
    wanted[text_col] = "text"
    pair_col = columns.get("text_pair")
    if pair_col is not None:
        if pair_col not in present:
            raise RecipeRuntimeError(
                f"data.{split}: text_pair column '{pair_col}' not found; the columns are: "
                f"{', '.join(present)}. Set data.columns.text_pair to the second text column")
        wanted[pair_col] = "text_pair"
    if preprocessing.label_column:
        label_col = columns.get("label", "label")
        if label_col not in present and "label" not in columns and "labels" in present:
            label_col = "labels"
        if label_col in present:
            wanted[label_col] = "labels"
        elif not (split == "test" and preprocessing.test_labels_optional):
            raise RecipeRuntimeError(
                f"data.{split}: label column '{label_col}' not found; the columns are: "
                f"{', '.join(present)}. Set data.columns.label to the column holding the label")
        else:
            context.log(f"data.test has no '{label_col}' column: predictions only, no test "
                        "metrics")
    ds = ds.select_columns(list(wanted))
    renames = {src: dst for src, dst in wanted.items() if src != dst}
    if renames:
        ds = ds.rename_columns(renames)
    for column in ("text", "text_pair"):
        if column in ds.column_names and _dtype(ds, column) not in ("string", "large_string"):
            ds = ds.cast_column(column, _string_feature())
    before = len(ds)
    ds = ds.filter(_has_text_and_label, batched=True, desc=f"drop empty {split} rows",
                   fn_kwargs={"columns": [c for c in ("text", "text_pair", "labels")
                                          if c in ds.column_names]})
    dropped = before - len(ds)
    if dropped:
        context.log(f"data.{split}: dropped {dropped:,} of {before:,} rows with empty text or "
                    "no label")
    if len(ds) == 0:
        raise RecipeRuntimeError(f"data.{split} has no rows with text (all {before:,} are "
                                 f"empty); check data.columns.text ('{text_col}')")
    return ds


def split_train(sources: dict, split_cfg: dict, seed: int, preprocessing, context) -> dict:
    """Carve ``split.test`` then ``split.eval`` out of the train source (seeded; stratified by
    label when ``split.stratify``)."""
    splits = dict(sources)
    train = splits["train"]
    total = len(train)
    stratify = bool(split_cfg.get("stratify")) and preprocessing.label_column
    for part in ("test", "eval"):
        size = split_cfg.get(part)
        if size is None:
            continue
        n = _rows(size, total)
        if n < 1 or n >= len(train):
            raise RecipeRuntimeError(
                f"data.split.{part}={size} gives {n} of the {len(train):,} remaining train "
                f"rows; choose a size that leaves rows on both sides")
        try:
            parts = train.train_test_split(
                test_size=n, seed=seed, stratify_by_column="labels" if stratify else None)
        except ValueError as exc:
            hint = (" (stratified splits need at least 2 rows per label and a split at least "
                    "as large as the number of labels; set data.split.stratify=false or use a "
                    "larger split)" if stratify else "")
            raise RecipeRuntimeError(f"cannot split data.split.{part}={size}: {exc}{hint}") \
                from None
        train, splits[part] = parts["train"], parts["test"]
    splits["train"] = train
    return {split: splits[split] for split in SPLITS if split in splits}


def _rows(size, total: int) -> int:
    """A split size as a row count: a fraction of ``total`` below 1, else a count."""
    if size < 1:
        return int(round(size * total))
    return int(size)


def _has_text_and_label(batch, columns):
    keep = []
    for i in range(len(batch[columns[0]])):
        ok = True
        for column in columns:
            value = batch[column][i]
            if value is None or (column != "labels" and not str(value).strip()):
                ok = False
                break
        keep.append(ok)
    return keep


def _dtype(ds, column):
    feature = ds.features[column]
    return getattr(feature, "dtype", type(feature).__name__)


def _string_feature():
    from datasets import Value

    return Value("string")


def _set_context_datasets(splits: dict, context) -> None:
    context.train_dataset = splits.get("train")
    context.eval_dataset = splits.get("eval")


# --------------------------------------------------------------------------------------------
# per-task preprocessing


@dataclass(frozen=True)
class TaskPreprocessing:
    """What a task does to the data: ``prepare(sources, recipe_data, context) -> sources``
    before the split (label maps, context.model_kwargs), and ``tokenize(ds, tokenizer,
    max_length, padding, split) -> ds`` once the tokenizer exists."""

    prepare: Callable
    tokenize: Callable
    label_column: bool = True
    test_labels_optional: bool = True


def _prepare_sequence_classification(sources: dict, recipe_data: dict, context) -> dict:
    """Decide the label names, turn labels into ids (a ``ClassLabel`` column) and set
    ``context.label_names`` and ``context.model_kwargs``."""
    from datasets import ClassLabel

    train = sources["train"]
    feature = train.features["labels"]
    given = recipe_data.get("labels")
    if isinstance(feature, ClassLabel):
        names = list(given or feature.names)
        if given and len(given) != feature.num_classes:
            raise RecipeRuntimeError(
                f"data.labels has {len(given)} names but the train data has "
                f"{feature.num_classes} classes ({', '.join(feature.names)})")
        seen = set(train.unique("labels"))
        integer = True
    elif _is_integer(feature):
        seen = set(train.unique("labels"))
        if min(seen) < 0:
            raise RecipeRuntimeError(f"data.train: integer labels must be >= 0 (found "
                                     f"{min(seen)}); use label names instead")
        integer = True
        if given:
            names = list(given)
            if max(seen) >= len(names):
                raise RecipeRuntimeError(
                    f"data.train has label id {max(seen)} but data.labels names only "
                    f"{len(names)} labels (ids 0..{len(names) - 1})")
        else:
            names = [str(i) for i in range(max(seen) + 1)]
    else:
        integer = False
        sources = {split: _labels_as_strings(ds) for split, ds in sources.items()}
        train = sources["train"]
        seen = set(train.unique("labels"))
        if given:
            names = list(given)
            unknown = sorted(seen - set(names))
            if unknown:
                raise RecipeRuntimeError(
                    f"data.train has labels not in data.labels: {', '.join(unknown[:10])}; "
                    "add them to data.labels (or remove data.labels to use the labels found)")
        else:
            names = sorted(seen)

    if len(names) < 2:
        raise RecipeRuntimeError(f"data.train has only one label ({', '.join(names)}); "
                                 "classification needs at least two")
    missing = [n for i, n in enumerate(names) if (i if integer else n) not in seen]
    if missing:
        context.log(f"warning: labels with no train rows: {', '.join(missing)}")
    label2id = {name: i for i, name in enumerate(names)}

    encoded = {}
    for split, ds in sources.items():
        if "labels" not in ds.column_names:
            encoded[split] = ds
            continue
        if split != "train":
            _check_known_labels(ds, split, names, seen, integer, bool(given))
        if not integer:
            ds = ds.map(_labels_to_ids, batched=True, fn_kwargs={"label2id": label2id},
                        desc=f"{split} labels to ids")
        encoded[split] = ds.cast_column("labels", ClassLabel(names=names))

    context.label_names = names
    context.model_kwargs = {
        **context.model_kwargs,
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": label2id,
    }
    context.log(f"labels ({len(names)}): " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
    return encoded


def _check_known_labels(ds, split, names, seen, integer, given):
    values = set(ds.unique("labels"))
    if integer:
        unknown = sorted(v for v in values if v not in seen or v >= len(names))
        unknown = [str(v) for v in unknown]
    else:
        known = set(names) if given else seen
        unknown = sorted(values - known)
    if unknown:
        where = "data.labels" if given and not integer else "the train data"
        raise RecipeRuntimeError(
            f"data.{split} has labels not seen in {where}: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}; the model can only predict "
            f"{', '.join(names)}")


def _is_integer(feature) -> bool:
    dtype = getattr(feature, "dtype", "")
    return isinstance(dtype, str) and dtype.startswith(("int", "uint"))


def _labels_as_strings(ds):
    if _dtype(ds, "labels") in ("string", "large_string"):
        return ds
    return ds.cast_column("labels", _string_feature())


def _labels_to_ids(batch, label2id):
    return {"labels": [label2id[label] for label in batch["labels"]]}


def _tokenize_sequence_classification(ds, tokenizer, max_length, padding, split):
    """input_ids/attention_mask (+ token_type_ids) per row; text columns removed."""
    pair = "text_pair" in ds.column_names
    return ds.map(
        _tokenize_text,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "padding": padding,
                   "pair": pair},
        desc=f"tokenize {split}",
    )


def _tokenize_text(batch, tokenizer, max_length, padding, pair):
    return tokenizer(batch["text"], batch["text_pair"] if pair else None, truncation=True,
                     max_length=max_length, padding=padding)


#: task -> preprocessing. Add a task here (masked-lm, causal-lm, seq2seq, token-classification)
#: with its own prepare/tokenize functions; every other step is shared.
TASK_PREPROCESSING = {
    "sequence-classification": TaskPreprocessing(
        prepare=_prepare_sequence_classification,
        tokenize=_tokenize_sequence_classification,
    ),
}

