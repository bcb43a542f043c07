"""The two entry points of the data pipeline (see :mod:`fturun.data`): prepare the splits
before the model exists, tokenize them once its tokenizer does."""

from __future__ import annotations

from ..errors import RecipeRuntimeError
from ..tasks import DEFAULT_MAX_LENGTH, TokenizeSettings, get_task
from .columns import select_columns
from .room import check_model_positions, check_room
from .sources import load_source
from .splits import SPLITS, split_train, subsample

SAMPLE_ROWS = 5  # raw rows per split kept in context.samples


def prepare_datasets(recipe_data: dict, registry, context) -> dict:
    """Build the datasets of a recipe's ``data`` section: ``{"train": ds, "eval": ds?, "test":
    ds?}`` (only the splits that exist).

    Sets ``context.task_record`` (the registry's record of ``context.task``),
    ``context.label_names``, ``context.model_kwargs`` (``num_labels``, ``id2label``,
    ``label2id`` for classification), ``context.samples``, ``context.train_dataset`` and
    ``context.eval_dataset``. The datasets are tokenized when ``context.tokenizer`` is set, else
    call :func:`tokenize_datasets` once the tokenizer exists. Raises
    :class:`RecipeRuntimeError` with what to change when the data does not fit the recipe.
    """
    task = get_task(registry, context.task)
    context.task_record = task
    seed = context.seed

    sources = {split: load_source(recipe_data[split], split, registry, context)
               for split in SPLITS if recipe_data.get(split) is not None}
    columns = recipe_data.get("columns") or {}
    sources = {split: select_columns(ds, split, columns, task, context)
               for split, ds in sources.items()}
    sources = task.prepare(sources, recipe_data, context)

    splits = split_train(sources, recipe_data.get("split") or {}, seed, task, context)
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


def tokenize_settings(recipe_data: dict, context) -> TokenizeSettings:
    """The :class:`TokenizeSettings` of a recipe's ``data`` section."""
    return TokenizeSettings(
        max_length=recipe_data.get("max_length", DEFAULT_MAX_LENGTH),
        padding="max_length" if recipe_data.get("padding") == "max_length" else False,
        block_size=recipe_data.get("block_size"),
        max_target_length=recipe_data.get("max_target_length"),
        label_all_tokens=bool(recipe_data.get("label_all_tokens", False)),
        label_names=tuple(context.label_names or ()),
    )


def tokenize_datasets(splits: dict, recipe_data: dict, context) -> dict:
    """Tokenize prepared datasets with ``context.tokenizer`` and the task's ``tokenize`` (see
    :func:`prepare_datasets`), once every split is known to fit (room, model positions)."""
    if context.tokenizer is None:
        raise RecipeRuntimeError("internal: tokenize_datasets needs context.tokenizer")
    task = context.task_record
    settings = tokenize_settings(recipe_data, context)
    check_model_positions(settings, context.model)
    for split, ds in splits.items():  # every split before any work: fail early, not midway
        check_room(ds, split, task, context.tokenizer, settings)
    splits = {split: task.tokenize(ds, context.tokenizer, settings, split)
              for split, ds in splits.items()}
    _set_context_datasets(splits, context)
    return splits


def _set_context_datasets(splits: dict, context) -> None:
    context.train_dataset = splits.get("train")
    context.eval_dataset = splits.get("eval")
