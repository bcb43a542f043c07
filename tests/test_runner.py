"""End-to-end runs of the example recipes through the real command line, kept tiny (a few
optimizer steps on a few dozen rows, 32 tokens) so the whole file runs in about a minute on two
CPU cores."""

from __future__ import annotations

import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from helpers import read_json  # noqa: E402

from fturun.cli import main  # noqa: E402
from fturun.run.build import report_to_without_mlflow  # noqa: E402
from fturun.run.report import total_steps  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LORA = os.path.join(ROOT, "recipes", "lora_cls.json")
FULL = os.path.join(ROOT, "recipes", "full_cls.json")

TINY = ["data.max_train_samples=32", "data.max_eval_samples=16", "data.max_length=32",
        "training.eval_strategy=steps", "training.eval_steps=2",
        "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1",
        "tracking.enabled=false"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """One tiny LoRA run shared by the tests that look at its outputs or resume from it."""
    output_dir = tmp_path_factory.mktemp("lora")
    code = main([LORA, "training.max_steps=4", *TINY, f"training.output_dir={output_dir}",
                 "output.merge_adapter=true"])
    return code, str(output_dir)


def test_lora_run_trains_evaluates_and_saves(lora_run):
    code, output_dir = lora_run
    assert code == 0
    model_dir = os.path.join(output_dir, "model")
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "tokenizer_config.json"):
        assert os.path.isfile(os.path.join(model_dir, name)), name
    merged_dir = os.path.join(output_dir, "model-merged")
    assert os.path.isfile(os.path.join(merged_dir, "model.safetensors"))
    assert read_json(os.path.join(merged_dir, "config.json"))["id2label"]["4"] == "tech"
    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and "eval_f1" in results
    recipe = read_json(os.path.join(output_dir, "recipe.json"))
    assert recipe["training"]["max_steps"] == 4  # the resolved recipe, overrides included
    assert recipe["adapter"]["name"] == "lora"
    assert read_json(os.path.join(output_dir, "trainer_state.json"))["global_step"] == 4
    assert os.path.isdir(os.path.join(output_dir, "checkpoint-4"))
    train = read_json(os.path.join(output_dir, "train_results.json"))
    assert 0 < train["seconds_to_first_step"] and 0 < train["median_step_seconds"] < \
        train["train_runtime"] / 2  # the median of 3 gaps between 4 step ends


def test_merged_model_loads_and_predicts(lora_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    code, output_dir = lora_run
    assert code == 0
    merged_dir = os.path.join(output_dir, "model-merged")
    model = AutoModelForSequenceClassification.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    with torch.no_grad():
        logits = model(**tokenizer(["Shares rose on the stock market"], return_tensors="pt"))
    assert logits.logits.shape == (1, 5)


def test_resume_from_latest_checkpoint(cli, lora_run, tmp_path):
    code, output_dir = lora_run
    assert code == 0
    copy = tmp_path / "run"
    shutil.copytree(output_dir, copy)
    code, out, err = cli(LORA, "training.max_steps=6", *TINY,
                         f"training.output_dir={copy}", "--resume")
    assert code == 0, err
    assert f"resuming from {copy / 'checkpoint-4'}" in out
    state = read_json(copy / "trainer_state.json")
    assert state["global_step"] == 6
    # the log history of the first run (steps 1-4) carries on
    assert {entry["step"] for entry in state["log_history"]} >= {1, 4, 5, 6}


def test_resume_without_checkpoints(cli, tmp_path):
    code, out, err = cli(LORA, *TINY, f"training.output_dir={tmp_path}",
                         "--resume")
    assert code == 1
    assert "no checkpoint-N folder in" in err and "run without --resume" in err


def test_resume_from_missing_folder(cli, tmp_path):
    missing = tmp_path / "checkpoint-99"
    code, out, err = cli(LORA, *TINY, f"training.output_dir={tmp_path}",
                         "--resume", missing)
    assert code == 1
    assert f"--resume {missing}: no such checkpoint folder" in err


def test_resume_value_that_looks_like_an_override(tmp_path):
    from fturun.core.errors import RecipeRuntimeError
    from fturun.run.checkpoints import resolve_resume

    with pytest.raises(RecipeRuntimeError, match="put --resume after the KEY=VALUE overrides"):
        resolve_resume("training.max_steps=6", str(tmp_path))


def test_resume_from_corrupt_checkpoint(cli, lora_run, tmp_path):
    code, output_dir = lora_run
    assert code == 0
    checkpoint = tmp_path / "checkpoint-4"
    shutil.copytree(os.path.join(output_dir, "checkpoint-4"), checkpoint)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    code, out, err = cli(LORA, "training.max_steps=6", *TINY,
                         f"training.output_dir={tmp_path / 'out'}", "--resume", checkpoint)
    assert code == 1
    assert "cannot load the checkpoint" in err and "corrupt" in err
    (checkpoint / "trainer_state.json").write_text("{not json")
    code, out, err = cli(LORA, *TINY, f"training.output_dir={tmp_path / 'out'}",
                         "--resume", checkpoint)
    assert code == 1
    assert "the checkpoint is corrupt (trainer_state.json" in err


@pytest.mark.run  # trains in this process
def test_check_prints_the_plan_and_saves_nothing(cli, tmp_path):
    output_dir = tmp_path / "never"
    code, out, err = cli("check", LORA, "data.max_length=32",
                         f"training.output_dir={output_dir}")
    assert code == 0, err
    assert "train 400 rows, eval 200 rows (checked on 16 train, 16 eval)" in out
    assert "0=business, 1=entertainment, 2=politics, 3=sports, 4=tech" in out
    assert "PeftModelForSequenceClassification over BertForSequenceClassification" in out
    assert "149,381 trainable of 22,864,522" in out
    assert "16 effective (16 per device x 1 accumulation x 1 device)" in out
    assert "100 optimizer steps" in out  # 400 rows / 16 per step x 4 epochs: the real recipe
    assert "estimate: ~" in out
    assert "eval_accuracy" in out and "check passed" in out
    assert not output_dir.exists()


@pytest.mark.slow
def test_full_fine_tune_with_weighted_loss_and_test_split(cli, tmp_path):
    code, out, err = cli(FULL, "training.max_steps=4", "data.max_train_samples=48",
                         "data.max_eval_samples=16", "data.max_test_samples=16",
                         "data.max_length=32", "training.eval_steps=2",
                         "training.save_steps=2", "training.logging_steps=1",
                         "training.per_device_train_batch_size=12", "tracking.enabled=false",
                         f"training.output_dir={tmp_path}")
    assert code == 0, err
    assert "class weights: negative=" in out
    results = read_json(tmp_path / "eval_results.json")
    for key in ("eval_accuracy", "eval_f1", "eval_matthews_correlation", "test_accuracy",
                "test_f1"):
        assert key in results, key
    with open(tmp_path / "test_predictions.jsonl", encoding="utf-8") as f:
        predictions = [json.loads(line) for line in f]
    assert len(predictions) == 16
    assert {p["prediction"] for p in predictions} <= {"negative", "neutral", "positive"}
    assert os.path.isfile(tmp_path / "model" / "model.safetensors")
    config = read_json(tmp_path / "model" / "config.json")
    assert config["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}


def test_fp16_without_a_gpu_is_a_clear_error(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    code, out, err = cli(LORA, "training.fp16=true", *TINY,
                         f"training.output_dir={tmp_path}")
    assert code == 1
    assert "fp16 needs a CUDA GPU; remove training.fp16 or run on a GPU" in err


def test_push_to_hub_offline_fails_before_training(cli, tmp_path):
    code, out, err = cli(LORA, "training.push_to_hub=true", *TINY,
                         f"training.output_dir={tmp_path}")
    assert code == 1
    assert "training.push_to_hub: HF_HUB_OFFLINE is set" in err
    assert "Remove training.push_to_hub" in err
    assert not os.path.exists(os.path.join(tmp_path, "model"))
    assert "data:" not in out  # refused before any data was read


def test_hub_names_offline_fail_fast_with_what_to_do(cli, tmp_path):
    import time

    yelp = os.path.join(ROOT, "recipes", "yelp_hub.json")
    started = time.monotonic()
    code, _, err = cli(yelp, f"training.output_dir={tmp_path}",
                       "tracking.enabled=false")
    assert code == 1 and time.monotonic() - started < 15
    assert "dataset 'yelp_review_full' is a Hub name, and HF_HUB_OFFLINE is set" in err
    assert "Use a local path" in err and "Traceback" not in err
    code, _, err = cli(LORA, "model.params.path=google-bert/bert-base-uncased",
                       *TINY, f"training.output_dir={tmp_path}")
    assert code == 1
    assert "model 'google-bert/bert-base-uncased' is a Hub name, and HF_HUB_OFFLINE is set" \
        in err


def test_report_to_never_includes_mlflow():
    assert report_to_without_mlflow(None) == "none"
    assert report_to_without_mlflow("mlflow") == "none"
    assert report_to_without_mlflow(["mlflow", "tensorboard"]) == ["tensorboard"]
    assert "mlflow" not in report_to_without_mlflow("all")


def test_total_steps_of_a_plan():
    training = {"per_device_train_batch_size": 16, "num_train_epochs": 4}
    assert total_steps(400, training) == 100
    assert total_steps(401, training) == 104
    assert total_steps(400, {**training, "gradient_accumulation_steps": 3}) == 36
    assert total_steps(400, {**training, "max_steps": 7}) == 7


def test_a_fresh_start_clears_what_a_new_run_must_not_inherit(tmp_path, capsys):
    from fturun.run.checkpoints import remove_stale_checkpoints, start_fresh

    for name in ("checkpoint-5", "checkpoint-10", "checkpoints-notes", "model"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint folder")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (tmp_path / "trainer_state.json").write_text('{"global_step": 10}')
    # checkpoints (incomplete ones, or another run's when replacing it), the metrics log and
    # the end state go; the model folder stays until the new run saves its own
    start_fresh(str(tmp_path), {}, replacing=["model", "checkpoint-10"])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-7", "checkpoints-notes", "model"]
    assert "removed checkpoint-10, checkpoint-5; its model/ stays until this run saves its " \
           "own" in capsys.readouterr().out
    # a run that saves no model does not leave the replaced run's model beside its outputs
    start_fresh(str(tmp_path), {"output": {"save_model": False}}, replacing=["model"])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-7", "checkpoints-notes"]
    assert remove_stale_checkpoints(str(tmp_path / "missing")) == []


def test_adapter_target_modules_that_match_nothing(cli, tmp_path):
    code, out, err = cli(LORA, *TINY, 'adapter.params.target_modules=["qkv"]',
                         f"training.output_dir={tmp_path}")
    assert code == 1
    assert "adapter.params.target_modules ['qkv'] match no module of the model" in err
    assert "key, query, value" in err


def test_merging_a_soft_prompt_is_refused_before_training(cli, tmp_path):
    code, out, err = cli(LORA, *TINY, "adapter.name=prompt_tuning",
                         "adapter.params={}", "output.merge_adapter=true",
                         f"training.output_dir={tmp_path}")
    assert code == 1
    assert "PROMPT_TUNING adapter adds virtual tokens and cannot be merged" in err
    assert not os.path.exists(tmp_path / "checkpoint-2")
