"""Turn the recipe's ``data`` section into train/eval/test datasets the Trainer can use.

The pipeline, in order (each step is a ``datasets`` transform, so a file-backed source is cached
by fingerprint and a second run with the same recipe skips the work):

1. load ``data.train`` (and ``data.eval`` / ``data.test``) through the registered dataset sources;
2. keep and rename the columns the task needs (``data.columns`` -> ``text``, ``text_pair``,
   ``labels``, ``target``) and drop rows with empty text (a warning says how many);
3. task preprocessing before the model exists (classification: the label map, labels -> ids;
   token classification: the tag map, tags checked against the words);
4. carve ``data.split.eval`` / ``data.split.test`` out of the train source (seeded, optionally
   stratified), then ``max_*_samples`` (seeded shuffle, then the first N rows);
5. tokenize (truncation to ``data.max_length``; padding only for ``data.padding="max_length"``,
   else the collator pads each batch). Language models may instead group the token stream into
   ``data.block_size`` blocks; token classification aligns word labels to sub-tokens; seq2seq
   tokenizes ``target`` into ``labels``.

Tokenizing needs the tokenizer, which comes with the model, and the model needs the label map
from step 3. So :func:`prepare_datasets` tokenizes only when ``context.tokenizer`` is already set;
the runner calls it first, builds the model, then calls :func:`tokenize_datasets`.

Each task has one :class:`TaskPreprocessing` (label handling before the split, tokenization
after): sequence classification, token classification, masked LM, causal LM and seq2seq.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Callable

from .errors import RecipeRuntimeError

SPLITS = ("train", "eval", "test")
DEFAULT_MAX_LENGTH = 128
SAMPLE_ROWS = 5  # raw rows per split kept in context.samples


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
    context.samples = {split: ds.select(range(min(len(ds), SAMPLE_ROWS))).to_list()
                       for split, ds in splits.items()}

    if context.tokenizer is not None:
        splits = tokenize_datasets(splits, recipe_data, context)
    _set_context_datasets(splits, context)
    return splits


def tokenize_datasets(splits: dict, recipe_data: dict, context) -> dict:
    """Tokenize prepared datasets with ``context.tokenizer`` (see :func:`prepare_datasets`)."""
    if context.tokenizer is None:
        raise RecipeRuntimeError("internal: tokenize_datasets needs context.tokenizer")
    preprocessing = task_preprocessing(context.task)
    settings = TokenizeSettings(
        max_length=recipe_data.get("max_length", DEFAULT_MAX_LENGTH),
        padding="max_length" if recipe_data.get("padding") == "max_length" else False,
        block_size=recipe_data.get("block_size"),
        max_target_length=recipe_data.get("max_target_length"),
        label_all_tokens=bool(recipe_data.get("label_all_tokens", False)),
        label_names=tuple(context.label_names or ()),
    )
    check_model_positions(settings, context.model)
    for split, ds in splits.items():  # every split before any work: fail early, not midway
        check_room(ds, split, preprocessing, context.tokenizer, settings)
    splits = {split: preprocessing.tokenize(ds, context.tokenizer, settings, split)
              for split, ds in splits.items()}
    _set_context_datasets(splits, context)
    return splits


@dataclass(frozen=True)
class TokenizeSettings:
    """What tokenization needs from the recipe: plain values only, so that ``datasets`` can
    fingerprint the transforms (and reuse their cache)."""

    max_length: int = DEFAULT_MAX_LENGTH
    padding: str | bool = False
    block_size: int | None = None
    max_target_length: int | None = None
    label_all_tokens: bool = False
    label_names: tuple = ()


# --------------------------------------------------------------------------------------------
# bounded resources: sources stream into Arrow files (memory-mapped), and tokenization writes
# its result next to them; a dataset whose tokenized form would not fit fails before the work

SIZE_SAMPLE_ROWS = 64  # rows tokenized to measure the bytes a tokenized row takes
SIZE_MARGIN = 1.2  # Arrow offsets, cache metadata


def free_bytes(path: str) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    import shutil

    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def available_memory() -> int:
    """Memory available to new allocations (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def datasets_cache_dir() -> str:
    """Where ``datasets`` writes the Arrow files of sources (``$HF_DATASETS_CACHE``)."""
    import datasets

    return str(datasets.config.HF_DATASETS_CACHE)


def check_room(ds, split: str, preprocessing, tokenizer, settings) -> None:
    """Raise :class:`RecipeRuntimeError` when tokenizing ``ds`` would need more room than is
    free where the result goes: the disk of its Arrow cache files, or memory for an in-memory
    dataset. The size of a tokenized row is measured on a few rows, tokenized in memory."""
    import datasets

    rows = len(ds)
    if rows == 0:
        return
    n = min(rows, SIZE_SAMPLE_ROWS)
    sample = datasets.Dataset.from_list(ds.select(range(n)).to_list(), features=ds.features)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # no bar for the sample
    try:
        tokenized = preprocessing.tokenize(sample, tokenizer, settings, split)
    finally:
        if bars:
            datasets.enable_progress_bars()
    needed = tokenized.data.nbytes / n * rows * SIZE_MARGIN
    if ds.cache_files:
        folder = os.path.dirname(ds.cache_files[0]["filename"])
        free, where = free_bytes(folder), f"of disk in {folder}"
        fix = ", or set HF_DATASETS_CACHE to a folder on a larger disk"
    else:
        free, where, fix = available_memory(), "of memory", ""
    if needed > free:
        raise RecipeRuntimeError(
            f"data.{split}: tokenizing {rows:,} rows needs about {human_bytes(needed)} {where}, "
            f"but only {human_bytes(free)} is free there; set data.max_{split}_samples, lower "
            f"data.max_length{fix}")


def max_positions(model) -> int | None:
    """The number of positions the model can embed (``max_position_embeddings``, GPT-2's
    ``n_positions``), or None when it has no such limit (relative positions, e.g. T5)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_model_positions(settings: TokenizeSettings, model) -> None:
    """``data.block_size``, ``data.max_length`` and ``data.max_target_length`` must fit the
    model's position embeddings: say so before anything is tokenized (else an index error deep
    inside the model's forward)."""
    limit = max_positions(model)
    if limit is None:
        return
    for key in ("block_size", "max_length", "max_target_length"):
        value = getattr(settings, key)
        if value is not None and value > limit:
            raise RecipeRuntimeError(
                f"data.{key}={value} is larger than the model's maximum of {limit} positions "
                f"({type(model.config).__name__}.max_position_embeddings); set data.{key} to "
                f"at most {limit}")


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
    """Keep the input, label and target columns the task needs under their standard names
    (``text``, ``text_pair``, ``labels``, ``target``), and drop rows with empty text (or an
    empty target, or no label) with a warning that says how many."""
    present = list(ds.column_names)
    wanted = {}  # source column -> standard name
    text_col = columns.get("text", "text")
    if text_col not in present:
        raise RecipeRuntimeError(
            f"data.{split}: text column '{text_col}' not found; the columns are: "
            f"{', '.join(present)}. Set data.columns.text to the column holding the "
            f"{'words' if preprocessing.text_is_words else 'text'}")
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
                f"{', '.join(present)}. Set data.columns.label to the column holding the "
                f"{'tags (a list per row, one per word)' if preprocessing.text_is_words else 'label'}")
        else:
            context.log(f"data.test has no '{label_col}' column: predictions only, no test "
                        "metrics")
    if preprocessing.target_column:
        target_col = columns.get("target", "target")
        if target_col in present:
            wanted[target_col] = "target"
        elif split != "test":
            raise RecipeRuntimeError(
                f"data.{split}: task '{context.task}' needs a target column (the text the "
                f"model learns to produce) and '{target_col}' is not one; the columns are: "
                f"{', '.join(present)}. Set data.columns.target to the column holding the "
                "target text")
        else:
            context.log(f"data.test has no '{target_col}' column: predictions only, no test "
                        "metrics")
    ds = ds.select_columns(list(wanted))
    renames = {src: dst for src, dst in wanted.items() if src != dst}
    if renames:
        ds = ds.rename_columns(renames)
    for column in ("text", "text_pair", "target"):
        if column not in ds.column_names:
            continue
        if column == "text" and preprocessing.text_is_words and _is_list(ds, column):
            continue
        if _dtype(ds, column) not in ("string", "large_string"):
            if _is_list(ds, column):
                raise RecipeRuntimeError(
                    f"data.{split}: column '{_source(wanted, column)}' holds lists, not text; "
                    f"task '{context.task}' reads one text per row from data.columns.{column}")
            ds = ds.cast_column(column, _string_feature())
    before = len(ds)
    ds = ds.filter(_has_text_and_label, batched=True, desc=f"drop empty {split} rows",
                   fn_kwargs={"columns": [c for c in ("text", "text_pair", "target", "labels")
                                          if c in ds.column_names]})
    dropped = before - len(ds)
    what = " or an empty target" if "target" in ds.column_names else ""
    what += " or no label" if "labels" in ds.column_names else ""
    if dropped and len(ds):
        context.log(f"warning: data.{split}: dropped {dropped:,} of {before:,} rows with empty "
                    f"text{what} (column '{text_col}')")
    if len(ds) == 0:
        raise RecipeRuntimeError(f"data.{split} has no rows with text (all {before:,} are "
                                 f"empty{what}); check data.columns.text ('{text_col}')")
    return ds


def _source(wanted: dict, standard: str) -> str:
    return next((src for src, dst in wanted.items() if dst == standard), standard)


def _is_list(ds, column) -> bool:
    from datasets import LargeList, List

    return isinstance(ds.features[column], (List, LargeList, list))


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
            if value is None or (column != "labels" and not _has_content(value)):
                ok = False
                break
        keep.append(ok)
    return keep


def _has_content(value) -> bool:
    if isinstance(value, (list, tuple)):  # words of a token-classification row
        return any(str(word).strip() for word in value if word is not None)
    return bool(str(value).strip())


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
    settings, split) -> ds`` (settings: a :class:`TokenizeSettings`) once the tokenizer
    exists. ``label_column``: rows carry a label (``data.columns.label``); ``target_column``:
    rows carry a target text (``data.columns.target``); ``text_is_words``: the text column may
    hold a list of words per row."""

    prepare: Callable
    tokenize: Callable
    label_column: bool = True
    test_labels_optional: bool = True
    target_column: bool = False
    text_is_words: bool = False


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


def _tokenize_sequence_classification(ds, tokenizer, settings, split):
    """input_ids/attention_mask (+ token_type_ids) per row; text columns removed."""
    pair = "text_pair" in ds.column_names
    return ds.map(
        _tokenize_text,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                   "padding": settings.padding, "pair": pair},
        desc=f"tokenize {split}",
    )


def _tokenize_text(batch, tokenizer, max_length, padding, pair):
    return tokenizer(batch["text"], batch["text_pair"] if pair else None, truncation=True,
                     max_length=max_length, padding=padding)


# --- token classification: one label per word, aligned to the word pieces


def _prepare_token_classification(sources: dict, recipe_data: dict, context) -> dict:
    """Words as lists (a text column is split on whitespace), labels checked to be lists with
    one label per word, the tag map (``data.labels`` or the sorted tags found in the train
    data), tags -> ids; sets ``context.label_names`` and ``context.model_kwargs``."""
    columns = recipe_data.get("columns") or {}
    where = (f"data.columns.text '{columns.get('text', 'text')}', data.columns.label "
             f"'{columns.get('label', 'label')}'")
    sources = {split: _as_words(ds, split) for split, ds in sources.items()}
    for split, ds in sources.items():
        if "labels" in ds.column_names:
            _check_labels_aligned(ds, split, where)
    train = sources["train"]
    inner = train.features["labels"].feature
    given = recipe_data.get("labels")
    if getattr(inner, "names", None):  # ClassLabel tags
        names = list(given or inner.names)
        integer = True
    elif _is_integer(inner):
        seen = {tag for tags in train["labels"] for tag in tags}
        integer = True
        if min(seen, default=0) < 0:
            raise RecipeRuntimeError(f"data.train: integer tags must be >= 0 (found "
                                     f"{min(seen)}); use tag names instead")
        names = list(given) if given else [str(i) for i in range(max(seen, default=0) + 1)]
        if max(seen, default=0) >= len(names):
            raise RecipeRuntimeError(
                f"data.train has tag id {max(seen)} but data.labels names only {len(names)} "
                f"tags (ids 0..{len(names) - 1})")
    else:
        integer = False
        seen = {str(tag) for tags in train["labels"] for tag in tags}
        names = list(given) if given else sorted(seen)
    if len(names) < 2:
        raise RecipeRuntimeError(f"data.train has only one tag ({', '.join(names)}); token "
                                 "classification needs at least two (e.g. O and B-PER)")
    label2id = {name: i for i, name in enumerate(names)}
    encoded = {}
    for split, ds in sources.items():
        if "labels" in ds.column_names and not integer:
            found = {str(tag) for tags in ds["labels"] for tag in tags}
            unknown = sorted(found - set(names))
            if unknown:
                known = "data.labels" if given else "the train data"
                raise RecipeRuntimeError(
                    f"data.{split} has tags not in {known}: {', '.join(unknown[:10])}; the "
                    f"model can only predict {', '.join(names)}")
            ds = ds.map(_tags_to_ids, batched=True, fn_kwargs={"label2id": label2id},
                        desc=f"{split} tags to ids")
        encoded[split] = ds
    context.label_names = names
    context.model_kwargs = {**context.model_kwargs, "num_labels": len(names),
                            "id2label": dict(enumerate(names)), "label2id": label2id}
    context.log(f"tags ({len(names)}): " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
    return encoded


def _as_words(ds, split):
    if _is_list(ds, "text"):
        return ds
    return ds.map(_split_words, batched=True, desc=f"split {split} text into words")


def _split_words(batch):
    return {"text": [str(text).split() for text in batch["text"]]}


def _check_labels_aligned(ds, split, where):
    """Each row's labels: a list with one entry per word."""
    if not _is_list(ds, "labels"):
        example = next((v for v in ds["labels"][:20] if v is not None), None)
        raise RecipeRuntimeError(
            f"data.{split}: token-classification labels must be lists with one label per "
            f"word, but the label column holds {type(example).__name__} values (e.g. "
            f"{str(example)[:40]!r}); {where}")
    row = 0
    for batch in ds.iter(batch_size=1000):
        for words, tags in zip(batch["text"], batch["labels"]):
            if tags is None or len(tags) != len(words):
                count = "no" if tags is None else len(tags)
                raise RecipeRuntimeError(
                    f"data.{split} row {row}: {len(words)} words but {count} labels; "
                    f"token-classification needs one label per word ({where}); words: "
                    f"{' '.join(map(str, words))[:80]!r}")
            row += 1


def _tags_to_ids(batch, label2id):
    return {"labels": [[label2id[str(tag)] for tag in tags] for tags in batch["labels"]]}


def _tokenize_token_classification(ds, tokenizer, settings, split):
    """Word pieces of the words; each word's label on its first piece, -100 (ignored) on the
    others, or, with ``data.label_all_tokens`` (train split only, so that evaluation still
    counts each word once), the word's label on every piece (``B-X`` continued as ``I-X``)."""
    if not getattr(tokenizer, "is_fast", False):
        raise RecipeRuntimeError(
            f"token-classification needs a fast tokenizer (it maps word pieces back to words); "
            f"{type(tokenizer).__name__} is not one: use a model with a tokenizer.json")
    names = list(settings.label_names)
    continuation = {}
    for i, name in enumerate(names):
        if name.startswith("B-") and "I-" + name[2:] in names:
            continuation[i] = names.index("I-" + name[2:])
    return ds.map(
        _tokenize_and_align,
        batched=True,
        remove_columns=[c for c in ("text", "labels") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                   "padding": settings.padding,
                   "label_all": settings.label_all_tokens and split == "train",
                   "continuation": continuation},
        desc=f"tokenize {split}",
    )


def _tokenize_and_align(batch, tokenizer, max_length, padding, label_all, continuation):
    encoded = tokenizer(batch["text"], is_split_into_words=True, truncation=True,
                        max_length=max_length, padding=padding)
    out = dict(encoded)
    if "labels" in batch:
        out["labels"] = [align_labels(encoded.word_ids(i), tags, label_all, continuation)
                         for i, tags in enumerate(batch["labels"])]
    return out


def align_labels(word_ids, tags, label_all=False, continuation=None) -> list:
    """Labels per word piece from labels per word. ``word_ids``: the word of each piece (None
    for special tokens and padding). The first piece of a word gets the word's tag; later
    pieces get -100, or with ``label_all`` the tag again (``continuation`` maps a ``B-X`` id to
    its ``I-X`` id)."""
    continuation = continuation or {}
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(-100)
        elif word != previous:
            labels.append(tags[word])
        else:
            labels.append(continuation.get(tags[word], tags[word]) if label_all else -100)
        previous = word
    return labels


# --- language models: whole texts, or the token stream cut into blocks


def _prepare_without_labels(sources: dict, recipe_data: dict, context) -> dict:
    return sources


def _tokenize_language_model(ds, tokenizer, settings, split, causal):
    """Each text (or text pair) tokenized, truncated to ``data.max_length``; or, with
    ``data.block_size``, all texts tokenized whole, concatenated and cut into blocks of
    ``block_size`` tokens (the remainder of each 1,000 rows is dropped). Causal LM: a text
    that does not end with the tokenizer's end token gets one (the model learns to stop), and
    no token_type_ids. Masked LM: a special-tokens mask, so the collator masks only words."""
    pair = "text_pair" in ds.column_names
    block = settings.block_size
    end_ids = sorted({i for i in (tokenizer.eos_token_id, tokenizer.sep_token_id)
                      if i is not None})
    ds = ds.map(
        _tokenize_lm_rows,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": None if block else settings.max_length,
                   "padding": False if block else settings.padding, "pair": pair,
                   "causal": causal, "end_ids": end_ids},
        desc=f"tokenize {split}",
    )
    if block:
        before = len(ds)
        ds = ds.map(_group_blocks, batched=True, batch_size=1000,
                    fn_kwargs={"block_size": block}, desc=f"{split}: blocks of {block} tokens")
        if len(ds) == 0:
            raise RecipeRuntimeError(
                f"data.block_size={block}: the {before:,} {split} rows hold fewer than {block} "
                f"tokens in all, so no block is left; use a smaller data.block_size or more "
                "data")
    return ds


def _tokenize_lm_rows(batch, tokenizer, max_length, padding, pair, causal, end_ids):
    kwargs = {"truncation": max_length is not None, "max_length": max_length,
              "padding": padding, "verbose": False}
    if causal:
        kwargs["return_token_type_ids"] = False
    else:
        kwargs["return_special_tokens_mask"] = True
    encoded = dict(tokenizer(batch["text"], batch["text_pair"] if pair else None, **kwargs))
    eos = tokenizer.eos_token_id
    if causal and eos is not None and not padding:
        for i, ids in enumerate(encoded["input_ids"]):
            if ids and ids[-1] not in end_ids and (max_length is None or len(ids) < max_length):
                ids.append(eos)
                encoded["attention_mask"][i].append(1)
    return encoded


def _group_blocks(batch, block_size):
    from itertools import chain

    joined = {key: list(chain.from_iterable(values)) for key, values in batch.items()}
    total = len(joined["input_ids"]) // block_size * block_size
    return {key: [values[i:i + block_size] for i in range(0, total, block_size)]
            for key, values in joined.items()}


# --- seq2seq: text -> target


def _tokenize_seq2seq(ds, tokenizer, settings, split):
    """Inputs from ``text`` (``data.max_length``), ``labels`` from ``target``
    (``data.max_target_length``, default ``data.max_length``)."""
    return ds.map(
        _tokenize_seq2seq_rows,
        batched=True,
        remove_columns=[c for c in ("text", "text_pair", "target") if c in ds.column_names],
        fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                   "max_target_length": settings.max_target_length or settings.max_length,
                   "padding": settings.padding},
        desc=f"tokenize {split}",
    )


def _tokenize_seq2seq_rows(batch, tokenizer, max_length, max_target_length, padding):
    encoded = dict(tokenizer(batch["text"], truncation=True, max_length=max_length,
                             padding=padding, return_token_type_ids=False))
    if "target" in batch:
        labels = tokenizer(text_target=batch["target"], truncation=True,
                           max_length=max_target_length, padding=padding)["input_ids"]
        if padding:  # padding is not a target token: the loss ignores it
            pad = tokenizer.pad_token_id
            labels = [[-100 if t == pad else t for t in row] for row in labels]
        encoded["labels"] = labels
    return encoded


#: task -> preprocessing: its own prepare/tokenize functions; every other step is shared.
TASK_PREPROCESSING = {
    "sequence-classification": TaskPreprocessing(
        prepare=_prepare_sequence_classification,
        tokenize=_tokenize_sequence_classification,
    ),
    "token-classification": TaskPreprocessing(
        prepare=_prepare_token_classification,
        tokenize=_tokenize_token_classification,
        test_labels_optional=False,
        text_is_words=True,
    ),
    "masked-lm": TaskPreprocessing(
        prepare=_prepare_without_labels,
        tokenize=partial(_tokenize_language_model, causal=False),
        label_column=False,
    ),
    "causal-lm": TaskPreprocessing(
        prepare=_prepare_without_labels,
        tokenize=partial(_tokenize_language_model, causal=True),
        label_column=False,
    ),
    "seq2seq": TaskPreprocessing(
        prepare=_prepare_without_labels,
        tokenize=_tokenize_seq2seq,
        label_column=False,
        target_column=True,
    ),
}
