"""The data report of a recipe, made as a run reads its data: the prepared splits measured with
the run's tokenizer loaded alone (no model weights), checked against ``data.limits``, written to
``OUTPUT_DIR/data/`` (``report.json``, ``report.txt``, ``token_lengths.png``) and logged to the
run's MLflow run (the ``data/`` artifact, ``data.<split>.<figure>`` metrics)."""

from __future__ import annotations

import copy
import os

from ..core.dist import is_main_process
from ..core.errors import RecipeRuntimeError
from ..core.io import write_bytes, write_json, write_text
from ..recipe.refs import component_ref
from . import report as figures
from .duplicates import find_duplicates, preview, split_keys
from .histogram import HISTOGRAM_FILE, write_histogram
from .limits import check_limits
from .measure import measure_split
from .report_text import full_text, summary_lines

REPORT_FOLDER = "data"
REPORT_FILE, TEXT_FILE = "report.json", "report.txt"
#: the figures logged as ``data.<split>.<figure>`` metrics
METRIC_FIGURES = ("rows", "truncated_share", "lost_token_share", "trained_share",
                  "last_turn_cut_share", "dropped_share")


def tokenizer_alone(registry, model_ref, context):
    """The run's tokenizer without the model's weights, through the model component's
    ``load_tokenizer`` (:func:`fturun.hookspecs.fturun_register_models`); None when the
    component has none."""
    name, params = component_ref(model_ref)
    try:
        component = registry.get("model", name)
    except KeyError as exc:
        raise RecipeRuntimeError(exc.args[0]) from None
    loader = getattr(component.factory, "load_tokenizer", None)
    if loader is None:
        return None
    return loader(component.params_for(params), context)


def report_context(context, tokenizer):
    """A copy of the build context with ``tokenizer`` and no model (what the report
    tokenizes with)."""
    shadow = copy.copy(context)
    shadow.tokenizer, shadow.model = tokenizer, None
    return shadow


def build_report(splits: dict, recipe_data: dict, context, tokenizer, recipe_path: str = "") \
        -> tuple:
    """``(report, lengths)``: the report's figures (a JSON-able dict) of the prepared
    ``splits`` and each split's token lengths per row."""
    from .prepare import chat_template, tokenize_settings

    shadow = report_context(context, tokenizer)
    settings = tokenize_settings(recipe_data, shadow, chat_template(recipe_data, shadow))
    training = context.recipe.get("training") or {}
    block = recipe_data.get("block_size")
    report = {"recipe": recipe_path, "task": context.task,
              "sources": figures.source_figures(context.data_log), "splits": {}}
    lengths, labels = {}, {}
    for split, ds in splits.items():
        f = {"rows": len(ds)}
        measured = _measured(ds, split, context, tokenizer, settings)
        if measured is not None:
            lengths[split] = measured.lengths
            f.update(figures.length_figures(measured, None if block else settings.max_length))
            f["packing"] = figures.packing_figures(measured, split, recipe_data, training,
                                                   context.seed)
            if "untrained_rows" in f:  # the run drops them (data.conversations)
                f["dropped"] = [{"reason": "conversations whose trained tokens all lie beyond "
                                           "data.max_length", "count": f["untrained_rows"],
                                 "first_rows": f["first_untrained_rows"]}] \
                    if f["untrained_rows"] else []
                f["dropped_share"] = figures.share(f["untrained_rows"], len(ds))
        labels[split] = f["labels"] = figures.label_figures(ds, context.label_names)
        empty = figures.empty_turns(ds)
        if empty is not None:
            f["empty_turns"] = empty
        report["splits"][split] = {k: v for k, v in f.items() if v is not None}
    figures.unseen_labels(labels)
    found = find_duplicates({split: split_keys(ds) for split, ds in splits.items()})
    for split, dup in found.items():
        figures_of = report["splits"][split]["duplicates"] = dup.as_dict()
        figures_of["first_texts"] = preview(splits[split], dup.first_rows[:3])
        if dup.first_leaked:
            figures_of["first_leaked_texts"] = preview(splits[split], dup.first_leaked[:3])
    return report, lengths


def _measured(ds, split, context, tokenizer, settings):
    """:func:`measure_split`, or None (said once) when the task's ``tokenize`` cannot take
    whole rows (a plugin task's own limits): the report goes on without lengths."""
    try:
        return measure_split(ds, split, context.task_record, tokenizer, settings)
    except RecipeRuntimeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin task's tokenize: report what we can
        context.log(f"data report: data.{split}: token lengths not measured, task "
                    f"'{context.task}' cannot tokenize whole rows ({type(exc).__name__}: "
                    f"{exc})")
        return None


def metrics_of(report: dict) -> dict:
    """``data.<split>.<figure>`` metrics of the report's key figures."""
    out = {}
    for split, f in report["splits"].items():
        for key in METRIC_FIGURES:
            if isinstance(f.get(key), (int, float)):
                out[f"data.{split}.{key}"] = f[key]
        dup = f.get("duplicates") or {}
        for key in ("duplicate_share", "leaked_share"):
            if key in dup:
                out[f"data.{split}.{key}"] = dup[key]
        for key in ("median", "p99", "max"):
            if key in (f.get("lengths") or {}):
                out[f"data.{split}.length_{key}"] = f["lengths"][key]
    for source, s in report.get("sources", {}).items():
        out[f"data.{source}.source_dropped_share"] = s["dropped_share"]
    return out


def write_report(report: dict, lengths: dict, folder: str, histogram: str | None = None) \
        -> str:
    """``report.json``, ``report.txt`` and ``token_lengths.png`` in ``folder`` (the histogram
    drawn from ``lengths``, or copied from the file ``histogram``); returns ``folder``."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, REPORT_FILE), report)
    write_text(os.path.join(folder, TEXT_FILE), full_text(report))
    target = os.path.join(folder, HISTOGRAM_FILE)
    if histogram is not None:
        with open(histogram, "rb") as handle:
            write_bytes(target, handle.read())
    else:
        max_length = next((f.get("max_length") for f in report["splits"].values()), None)
        write_histogram(lengths, max_length, target)
    return folder


def report_for_run(splits: dict, recipe_data: dict, registry, model_ref, context,
                   recipe_path: str = "", tokenizer=None):
    """The run's data report: measured with ``tokenizer``, else the tokenizer alone (before the
    model loads), ``data.limits`` checked (a broken limit raises
    :class:`~fturun.data.limits.DataLimitError`), the summary and warnings printed, the
    files written to ``OUTPUT_DIR/data`` and logged to the run's tracker. None (and a line
    saying so) when the model component cannot give its tokenizer alone: call again with the
    model's tokenizer once it is loaded."""
    stops = "before training" if tokenizer is not None else "before loading the model"
    if tokenizer is None:
        tokenizer = tokenizer_alone(registry, model_ref, context)
        if tokenizer is None:
            context.log(f"data report: model '{component_ref(model_ref)[0]}' gives no "
                        "tokenizer without loading its weights; the report (and data.limits) "
                        "waits for the model")
            return None
    report, lengths = build_report(splits, recipe_data, context, tokenizer, recipe_path)
    report["warnings"] = check_limits(report, recipe_data.get("limits"), stops)
    publish(report, lengths, context)
    return report


def publish(report: dict, lengths: dict, context, histogram: str | None = None) -> None:
    """Print the summary and warnings; write the files (:func:`write_report`) and log them
    (main process only)."""
    for line in summary_lines(report):
        context.log(f"data report: {line}")
    for line in report.get("warnings") or []:
        context.log(line)
    if not is_main_process():
        return
    folder = write_report(report, lengths, os.path.join(context.output_dir, REPORT_FOLDER),
                          histogram)
    tracker = context.tracker
    if tracker is not None:
        tracker.log_metrics(metrics_of(report), 0)
        tracker.log_artifact(folder, REPORT_FOLDER)
