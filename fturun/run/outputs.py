"""What a run leaves in its output folder, written through :mod:`fturun.core.io` (whole files, whole
folders): ``model/`` (and ``model-merged/``), ``recipe.json``, ``eval_results.json``,
``test_predictions.jsonl`` and ``samples.txt``. Only the main process writes."""

from __future__ import annotations

import os

from ..core.dist import is_main_process
from ..core.errors import RecipeRuntimeError
from ..core.io import partial_folder, read_json, replace_folder, write_json, write_text
from ..engine.rules import fsdp_enabled
from ..recipe.refs import component_ref
from .modelinfo import is_peft_model

RESULTS_FILE = "eval_results.json"
RECIPE_FILE = "recipe.json"
PREDICTIONS_FILE = "test_predictions.jsonl"
SAMPLES_FILE = "samples.txt"
ADAPTER_CONFIG = "adapter_config.json"  # peft's


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
    if is_peft_model(trainer.model):
        portable_base_reference(partial, data, build.context)
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
                merged = merge_into_reloaded_base(build, data, model_dir) \
                    if reload_reason(data) else trainer.model.merge_and_unload()
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


def reload_reason(data: dict) -> str | None:
    """Why ``output.merge_adapter`` merges into a freshly loaded base instead of the trained
    one: a quantized base (4/8-bit weights cannot hold the merged ones) or FSDP (the trained
    base is sharded across processes). None: merge in place."""
    model = data.get("model")
    params = (model.get("params") or {}) if isinstance(model, dict) else {}
    if isinstance(params.get("quantization"), dict):
        return "the base was loaded quantized"
    if fsdp_enabled(data.get("training") or {}):
        return "the trained base is sharded by FSDP"
    return None


def merge_into_reloaded_base(build, data: dict, adapter_dir: str):
    """The adapter saved in ``adapter_dir`` merged into the base model loaded again through the
    recipe's model component, unquantized, in the quantization's compute dtype (else
    ``model.params.dtype``); the reason is printed."""
    from peft import PeftModel

    from ..chat.templates import fit_embeddings
    from .build import build_component

    name, params = component_ref(data["model"])
    params = dict(params)
    quant = params.pop("quantization", None)
    dtype = (quant or {}).get("compute_dtype", "bfloat16") if quant is not None \
        else params.get("dtype", "float32")
    params["dtype"] = dtype
    print(f"output.merge_adapter: {reload_reason(data)}, so the adapter is merged into the base "
          f"model loaded again, unquantized, in {dtype}", flush=True)
    base, _ = build_component(build.registry, "model", {"name": name, "params": params},
                              build.context)
    fit_embeddings(base, build.tokenizer)  # the rows of the tokens a chat template added
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()


def portable_base_reference(adapter_dir: str, recipe_data: dict, context) -> str | None:
    """Name the base model in ``adapter_dir/adapter_config.json`` as the recipe did
    (``package:NAME/path``, a Hub name, a path relative to the recipe) instead of the folder it
    was loaded from on this machine, so the adapter's config means the same on another
    machine. Only when the recipe's ``model.params.path`` is that folder; returns the name
    written (None: left as it was)."""
    config_path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    model = recipe_data.get("model")
    named = (model.get("params") or {}).get("path") if isinstance(model, dict) else None
    config = read_json(config_path, None)
    if not isinstance(named, str) or not isinstance(config, dict):
        return None
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or base == named or not os.path.isdir(base):
        return None
    try:
        local = context.resolve_path(named)
        same = os.path.isdir(local) and os.path.samefile(local, base)
    except (OSError, RecipeRuntimeError):  # a package no longer installed, a Hub name
        same = False
    if not same:
        return None
    config["base_model_name_or_path"] = named
    write_json(config_path, config)
    return named


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
