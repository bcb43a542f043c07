"""The two entry points of the data pipeline (see :mod:`fturun.data`): prepare the splits
before the model exists, tokenize them once its tokenizer does."""

from __future__ import annotations

from ..chat.conversation import check_template
from ..chat.parity import check_parity
from ..chat.templates import fit_embeddings, prepare_chat_tokenizer
from ..core.errors import RecipeRuntimeError
from ..plugin.tasks import DEFAULT_MAX_LENGTH, TokenizeSettings, generation_eval_rows, get_task
from .columns import select_columns
from .conversations import drop_untrained_rows, select_conversations
from .drops import DataLog, record_read
from .fingerprint import quick_tokenizer_hash
from .mixing import load_sources
from .room import check_model_positions, check_room
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
    context.data_log = DataLog()

    columns = recipe_data.get("columns") or {}
    def column_step(ds, split):
        record_read(context, split, len(ds))  # the data report's rows read
        if recipe_data.get("format"):  # conversations: one messages column
            return select_conversations(ds, split, recipe_data, context)
        return select_columns(ds, split, columns, task, context)

    # each source through the columns step; several data.train sources mixed by weight
    sources = load_sources(recipe_data, registry, context, column_step)
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
    context.samples = {split: ds.select(range(min(len(ds), kept_rows(split, task, context))))
                       .to_list() for split, ds in splits.items()}

    if context.tokenizer is not None:
        splits = tokenize_datasets(splits, recipe_data, context)
    _set_context_datasets(splits, context)
    return splits


def kept_rows(split: str, task, context) -> int:
    """Raw rows of ``split`` kept in ``context.samples``: :data:`SAMPLE_ROWS`; of the eval
    split, at least the rows a generation-based evaluation answers (``Task.answer_prompts``,
    ``generation.eval_rows``)."""
    if split == "eval" and task.answer_prompts is not None:
        return max(SAMPLE_ROWS, generation_eval_rows(context.recipe))
    return SAMPLE_ROWS


def tokenize_settings(recipe_data: dict, context, template=None) -> TokenizeSettings:
    """The :class:`TokenizeSettings` of a recipe's ``data`` section; ``template``: ``(sha256,
    origin)`` of the chat template of conversation rows."""
    return TokenizeSettings(
        max_length=recipe_data.get("max_length", DEFAULT_MAX_LENGTH),
        padding="max_length" if recipe_data.get("padding") == "max_length" else False,
        block_size=recipe_data.get("block_size"),
        max_target_length=recipe_data.get("max_target_length"),
        label_all_tokens=bool(recipe_data.get("label_all_tokens", False)),
        label_names=tuple(context.label_names or ()),
        chat_format=recipe_data.get("format"),
        train_on=recipe_data.get("train_on", "assistant"),
        chat_template=template[1] if template else None,
        chat_template_sha256=template[0] if template else None,
    )


def tokenize_datasets(splits: dict, recipe_data: dict, context) -> dict:
    """Tokenize prepared datasets with ``context.tokenizer`` and the task's ``tokenize`` (see
    :func:`prepare_datasets`), once every split is known to fit (room, model positions)."""
    if context.tokenizer is None:
        raise RecipeRuntimeError("internal: tokenize_datasets needs context.tokenizer")
    task = context.task_record
    template = chat_template(recipe_data, context)
    settings = tokenize_settings(recipe_data, context, template)
    if template is not None and "train" in splits:  # once, on real rows, before training
        train = splits["train"]
        check_parity(train.select(range(min(len(train), 3))), context.tokenizer,
                     settings.train_on, template[1], context.log)
    check_model_positions(settings, context.model)
    for split, ds in splits.items():  # every split before any work: fail early, not midway
        check_room(ds, split, task, context.tokenizer, settings)
    with quick_tokenizer_hash(context.tokenizer):  # each map's fingerprint in ms, not 0.25 s
        splits = {split: task.tokenize(ds, context.tokenizer, settings, split)
                  for split, ds in splits.items()}
    if template is not None:  # rows with labels (a task generating its answers has none)
        splits = {split: drop_untrained_rows(ds, split, settings, context)
                  if "labels" in ds.column_names else ds for split, ds in splits.items()}
    _set_context_datasets(splits, context)
    return splits


def chat_template(recipe_data: dict, context) -> tuple | None:
    """For conversation rows (``data.format``): the run's chat template set on the tokenizer
    (a model factory may have done it already) and checked, the model's embeddings resized to
    the tokens it added, its sha256 and origin tagged on the run; returns ``(sha256, origin)``
    (None without ``data.format``)."""
    if not recipe_data.get("format"):
        return None
    tokenizer = context.tokenizer
    sha, origin = prepare_chat_tokenizer(tokenizer, context.recipe, context.recipe_dir)
    check_template(tokenizer, origin, recipe_data.get("train_on", "assistant"))
    model = context.model
    rows = model.get_input_embeddings().weight.shape[0] \
        if hasattr(model, "get_input_embeddings") else len(tokenizer)
    if fit_embeddings(context.model, tokenizer):
        context.added_token_ids = list(range(rows, len(tokenizer)))
        context.log(f"chat template {origin}: {len(tokenizer):,} tokens with the ones it adds; "
                    "the model's embeddings were resized")
    if context.tracker is not None:
        context.tracker.set_tags({"fturun.chat_template": origin,
                                  "fturun.chat_template_sha256": sha})
    return sha, origin


def _set_context_datasets(splits: dict, context) -> None:
    context.train_dataset = splits.get("train")
    context.eval_dataset = splits.get("eval")
