"""The plan in a run: printed at the start of ``fturun RECIPE`` and ``fturun check``, kept in
engine.json and as MLflow params, the ``"auto"`` batch keeping the effective batch, and the
measured peak memory and step time logged beside the plan's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.max_train_samples=24", "data.max_eval_samples=8", "data.max_length=32",
        "training.max_steps=3", "training.eval_strategy=no", "training.save_strategy=no",
        "training.load_best_model_at_end=false", "training.logging_steps=1"]


@pytest.fixture(autouse=True)
def plan_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTURUN_PLAN_CACHE", str(tmp_path / "plan-cache"))


@pytest.mark.run  # trains in this process
def test_a_run_plans_chooses_auto_batch_and_measures_what_was_planned(cli, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    code, stdout, err = cli(
        "run", ROOT / "recipes" / "lora_cls.json", *TINY,
        "training.per_device_train_batch_size=auto", "training.effective_batch_size=8",
        "training.gradient_accumulation_steps=4", f"training.output_dir={out}",
        f"tracking.tracking_uri={uri}", "tracking.experiment=plan-run",
        "tracking.log_model=false", "output.save_model=false")
    assert code == 0, err
    assert "batch: per_device_train_batch_size auto -> 8, gradient_accumulation_steps 1: " \
        "effective batch 8" in stdout
    assert "plan: CPU" in stdout and "verdict:  fits" in stdout
    engine = json.loads((out / "engine.json").read_text())
    assert engine["plan"]["plan.params_trainable"] == 149_381  # 5 labels, from the data
    assert engine["plan"]["plan.per_device_train_batch_size"] == 8
    results = json.loads((out / "train_results.json").read_text())
    for key in ("plan/peak_memory_bytes", "measured/peak_memory_bytes",
                "plan/peak_memory_error", "plan/step_seconds", "measured/step_seconds",
                "plan/step_seconds_error"):
        assert key in results, key
    assert results["measured/peak_memory_bytes"] > 0

    from mlflow.tracking import MlflowClient

    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params["plan.params_trainable"] == "149381"
    assert int(run.data.params["args.per_device_train_batch_size"]) * \
        int(run.data.params["args.gradient_accumulation_steps"]) == 8
    assert "measured/peak_memory_bytes" in run.data.metrics
    assert "plan/peak_memory_bytes" in run.data.metrics


def test_check_prints_the_plan(cli):
    code, stdout, err = cli("check", ROOT / "recipes" / "lora_cls.json", *TINY)
    assert code == 0, err
    assert "plan: CPU" in stdout
    assert "  params:   149,381 trainable of 22,864,522" in stdout
    assert "tokens a row at most (the tokenized data: longest 32" in stdout
