"""The data step of a run and of ``fturun data``: the prepared splits and their report before
the model loads (``data.limits`` checked there), or the splits of ``data.preprocessed``; the
tokenization once the model's tokenizer exists."""

from __future__ import annotations

import copy
import os

from ..core.errors import RecipeRuntimeError
from ..data import prepare_datasets, tokenize_datasets
from ..data.limits import check_limits
from ..data.prepare import chat_template
from ..data.preprocessed import REPORT_FOLDER as PREPROCESSED_REPORT
from ..data.preprocessed import read_preprocessed, write_preprocessed
from ..data.reporting import (
    REPORT_FOLDER,
    build_report,
    publish,
    report_for_run,
    tokenizer_alone,
    write_report,
)


def prepare_data(data: dict, registry, context, recipe_path: str) -> tuple:
    """``(splits, preprocessed, report)``: the prepared splits and their report (printed,
    written, logged, limits checked; None when the model gives no tokenizer alone), or the
    tokenized splits of ``data.preprocessed`` and the report written with them (then
    ``preprocessed`` is True: nothing left to tokenize)."""
    data_cfg = data["data"]
    if data_cfg.get("preprocessed"):
        shown = data_cfg["preprocessed"]
        tokenizer = _tokenizer_or_refuse(registry, data, context, "data.preprocessed")
        splits, report, histogram = read_preprocessed(context.resolve_path(shown), shown,
                                                      context, tokenizer)
        report["warnings"] = check_limits(report, data_cfg.get("limits"))
        publish(report, {}, context, histogram)
        return splits, True, report
    splits = prepare_datasets(data_cfg, registry, context)
    report = report_for_run(splits, data_cfg, registry, data["model"], context, recipe_path)
    return splits, False, report


def tokenize_data(splits: dict, data: dict, context, preprocessed: bool, report) -> tuple:
    """``(splits, report)``: the prepared splits tokenized with the model's tokenizer, and the
    data report made with it when none could be made before (a model without a tokenizer
    alone); preprocessed splits are tokenized already (a chat template still resizes the
    model's embeddings)."""
    data_cfg = data["data"]
    if not preprocessed:
        if report is None:
            report = report_for_run(splits, data_cfg, None, data["model"], context,
                                    tokenizer=context.tokenizer)
        return tokenize_datasets(splits, data_cfg, context), report
    chat_template(data_cfg, context)
    return splits, report


def _tokenizer_or_refuse(registry, data: dict, context, what: str):
    tokenizer = tokenizer_alone(registry, data["model"], context)
    if tokenizer is None:
        name = data["model"] if isinstance(data["model"], str) else data["model"].get("name")
        raise RecipeRuntimeError(
            f"{what}: model '{name}' gives no tokenizer without loading its weights (its "
            "plugin's factory has no load_tokenizer), so its data cannot be checked before "
            "loading; use 'pretrained' or 'from_config', or ask the plugin's author")
    return tokenizer


def inspect_data(recipe, registry, context, write: str | None = None) -> tuple:
    """``fturun data``: the recipe's data read, prepared and tokenized as a run does (the same
    cache), its report written to ``OUTPUT_DIR/data/`` (``report["folder"]``); with
    ``write``, the tokenized splits saved there for ``data.preprocessed``. Returns ``(report,
    limit_error)``: the :class:`~fturun.data.limits.DataLimitError` of a broken
    ``data.limits`` limit (None when none is broken), for the caller to raise once the
    report is shown."""
    data = recipe.data
    data_cfg = data["data"]
    if data_cfg.get("preprocessed"):
        raise RecipeRuntimeError(
            "fturun data reads the recipe's sources; this recipe reads data.preprocessed "
            f"('{data_cfg['preprocessed']}'): remove data.preprocessed from the recipe to report "
            "on the sources")
    tokenizer = _tokenizer_or_refuse(registry, data, context, "fturun data")
    splits = prepare_datasets(data_cfg, registry, context)
    report, lengths = build_report(splits, data_cfg, context, tokenizer, recipe.path)
    folder = os.path.join(context.output_dir, REPORT_FOLDER)
    limit_error = None
    try:
        report["warnings"] = check_limits(report, data_cfg.get("limits"))
    except RecipeRuntimeError as exc:
        report["warnings"], limit_error = [], exc
    shadow = copy.copy(context)
    shadow.tokenizer, shadow.model = tokenizer, None
    tokenized = tokenize_datasets(splits, data_cfg, shadow)  # as the run does: its cache
    report["folder"] = write_report(report, lengths, folder)
    if write:
        write_preprocessed(write, tokenized, report, shadow, tokenizer)
        write_report(report, lengths, os.path.join(write, PREPROCESSED_REPORT))
        report["written"] = write
    return report, limit_error
