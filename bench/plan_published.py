"""The plans of published models (their config.json, kept in tests/data/model_configs/): full
fine-tuning in bf16 mixed precision with AdamW, LoRA r=16 over a bf16 base, and QLoRA 4-bit, one
row of 2048 tokens, gradient checkpointing on (as LLaMA-Factory runs by default), on a 24 GB
and an 80 GB GPU. Prints the README's Markdown table; no weight is needed (configs only).

    python bench/plan_published.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "tests", "data", "model_configs")
MODELS = [("Llama-3.1-8B", "llama-3.1-8b.json"), ("Qwen2.5-7B", "qwen2.5-7b.json"),
          ("Mistral-7B-v0.1", "mistral-7b-v0.1.json"), ("Gemma-2-9B", "gemma-2-9b.json")]
LORA = {"name": "lora", "params": {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}}
MODES = {
    "full bf16, AdamW": ({"dtype": "float32"}, None),
    "LoRA r=16": ({"dtype": "bfloat16"}, LORA),
    "QLoRA 4-bit": ({"dtype": "bfloat16", "quantization": {"bits": 4}}, LORA),
}
GPUS = [("24 GB", "rtx4090"), ("80 GB", "h100")]


def recipe_file(folder: str, model_dir: str, params: dict, adapter) -> str:
    recipe = {"task": "causal-lm",
              "data": {"train": {"name": "files", "params": {"path": "train.jsonl"}},
                       "max_length": 2048},
              "model": {"name": "pretrained", "params": {"path": model_dir, **params}},
              "training": {"per_device_train_batch_size": 1, "bf16": True,
                           "gradient_checkpointing": True, "max_steps": 1}}
    if adapter:
        recipe["adapter"] = adapter
    path = os.path.join(folder, "recipe.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(recipe, handle)
    return path


def cell(plans: list) -> str:
    """``peak GiB: fits 24 / 80`` for the plans on each GPU."""
    peak = plans[-1].figures["memory"]["peak"] / 1024 ** 3
    marks = " / ".join(("fits" if plan.fits else "no") for plan in plans)
    return f"{peak:.1f} GiB ({marks})"


def main() -> int:
    from fturun.plan import plan_for_recipe
    from fturun.plugin.manager import default_plugins
    from fturun.recipe.load import load_recipe

    registry = default_plugins().registry
    print("| model | parameters | " + " | ".join(MODES) + " |")
    print("|---|---|" + "---|" * len(MODES))
    with tempfile.TemporaryDirectory() as folder:
        for name, file in MODELS:
            model_dir = os.path.join(folder, name)
            os.makedirs(model_dir)
            shutil.copy(os.path.join(CONFIGS, file), os.path.join(model_dir, "config.json"))
            cells, total = [], 0
            for params, adapter in MODES.values():
                recipe = load_recipe(recipe_file(folder, model_dir, params, adapter), [])
                plans = [plan_for_recipe(recipe, registry, gpu=gpu) for _, gpu in GPUS]
                total = total or plans[0].planner.census["total"]  # the full model's
                step = plans[-1].figures["step"]["total"]
                cells.append(f"{cell(plans)}, {step:.2f} s/step on H100")
            print(f"| {name} | {total / 1e9:.2f} B | " + " | ".join(cells) + " |")
    print("\ncell: peak per device (fits on 24 GB / on 80 GB), step time of 2048 tokens on an "
          "H100 at the expected utilisation; batch 1 x 2048 tokens, gradient checkpointing on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
