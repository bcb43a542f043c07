"""What a run leaves in its output folder, written through :mod:`fturun.io` (whole files, whole
folders): ``model/`` (and ``model-merged/``), ``recipe.json``, ``eval_results.json``,
``test_predictions.jsonl`` and ``samples.txt``. Only the main process writes."""

from __future__ import annotations

import os

from .dist import is_main_process
from .errors import RecipeRuntimeError
from .io import partial_folder, replace_folder, write_json, write_text
from .modelinfo import is_peft_model

RESULTS_FILE = "eval_results.json"
RECIPE_FILE = "recipe.json"
PREDICTIONS_FILE = "test_predictions.jsonl"
SAMPLES_FILE = "samples.txt"


def save_outputs(trainer, build, data: dict, output_dir: str) -> dict:
    """Save the model (an adapter for a peft model) and tokenizer to ``output_dir/model``, and
    the merged model to ``output_dir/model-merged`` when ``output.merge_adapter``. Returns
    ``{what: folder}``."""
    output = data.get("output") or {}
    saved = {}
    if not output.get("save_model", True):
        return saved
    model_dir = os.path.join(output_dir, "model")
    partial = partial_folder(model_dir, clear=is_main_process())  # the same name on every rank
    trainer.save_model(partial)  # the tokenizer too: it is the Trainer's processing_class
    saved["adapter" if is_peft_model(trainer.model) else "model"] = model_dir
    if not is_main_process():  # save_model runs on every rank (ZeRO-3 gathers); rank 0 writes
        return saved
    if is_peft_model(trainer.model) and build.context.model_kwargs:
        # the label map beside the adapter: AutoPeftModelFor...from_pretrained(model_dir,
        # **labels) rebuilds the base model with the right head (a config.json here would make
        # transformers take the folder for a full model)
        write_json(os.path.join(partial, "labels.json"), build.context.model_kwargs)
    replace_folder(partial, model_dir)
    if output.get("merge_adapter"):
        if not is_peft_model(trainer.model):
            print("note: output.merge_adapter is set but the recipe has no adapter; nothing "
                  "to merge")
        else:
            merged_dir = os.path.join(output_dir, "model-merged")
            try:
                merged = trainer.model.merge_and_unload()
            except (AttributeError, ValueError, NotImplementedError) as exc:
                raise RecipeRuntimeError(f"output.merge_adapter: this adapter cannot be merged "
                                         f"into the model ({exc}); remove "
                                         "output.merge_adapter") from None
            partial = partial_folder(merged_dir, clear=True)
            merged.save_pretrained(partial)
            if build.tokenizer is not None:
                build.tokenizer.save_pretrained(partial)
            replace_folder(partial, merged_dir)
            saved["merged model"] = merged_dir
    return saved


def write_results(output_dir: str, recipe_data: dict, metrics: dict) -> str:
    """``recipe.json`` (the recipe as resolved) and ``eval_results.json`` (the eval and test
    metrics); returns the results file's path."""
    write_json(os.path.join(output_dir, RECIPE_FILE), recipe_data)
    return write_json(os.path.join(output_dir, RESULTS_FILE),
                      {k: v for part in ("eval", "test") for k, v in metrics.get(part, {}).items()})


def write_samples(samples: list, output_dir: str, tracker=None) -> str | None:
    """Print the sample generations, write them to ``samples.txt`` and log that file to the
    run (``samples/``); returns the file's path (None without samples)."""
    if not samples:
        return None
    lines = []
    for sample in samples:
        lines.append(f"prompt:    {sample['prompt']}")
        lines.append(f"generated: {sample['generated']}")
        if sample.get("reference"):
            lines.append(f"reference: {sample['reference']}")
        lines.append("")
    print("\nsample generations:\n" + "\n".join("  " + line for line in lines))
    path = write_text(os.path.join(output_dir, SAMPLES_FILE), "\n".join(lines))
    if tracker is not None:
        tracker.log_artifact(path, "samples")
    return path
