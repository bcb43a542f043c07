"""The fturun-trl distribution in plugins/fturun-trl: pip-installed like a third-party plugin, its
``preference`` task (TRL's DPOTrainer through the Task record's own Trainer classes) seen by the
CLI, its DPO settings validated from the schema committed with it (and fresh against the
installed TRL), a recipe naming the task refused without it, and the SFT -> DPO recipes run
end to end: margins rise, the MLflow run holds the rewards metrics, a resume equals an
uninterrupted run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import ROOT, site_env

PLUGIN_SRC = ROOT / "plugins" / "fturun-trl"
RECIPES = PLUGIN_SRC / "recipes"
#: tiny versions of the plugin's two recipes (a few steps on a few rows)
SFT_TINY = ["training.max_steps=4", "data.max_train_samples=64", "data.split.eval=8",
            "training.eval_strategy=no", "tracking.enabled=false"]
DPO_TINY = ["training.max_steps=6", "data.max_train_samples=24", "data.split.eval=16",
            "training.per_device_train_batch_size=8", "training.per_device_eval_batch_size=8",
            "training.eval_steps=3", "training.save_steps=3", "training.logging_steps=1",
            "training.eval_on_start=true", "training.lr_scheduler_type=constant",
            "data.max_length=40"]


@pytest.fixture(scope="session")
def trl_site(pip_install_target, tmp_path_factory):
    """A folder with fturun-trl pip-installed into it (``--target``, its dependencies being the
    venv's), from a clean copy of plugins/fturun-trl."""
    work = tmp_path_factory.mktemp("trl-plugin")
    return pip_install_target(work / "site", PLUGIN_SRC, clean_copy=work)


def test_plugins_lists_the_installed_trl_plugin(run_fturun, trl_site):
    result = run_fturun("plugins", env=site_env(trl_site))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    plugin = {p["name"]: p for p in report["plugins"]}["trl"]
    assert plugin["status"] == "ok", plugin
    assert plugin["api"] == ">=1.4,<2" and report["api_version"] == "1.4"
    assert plugin["components"] == {
        "dataset": ["preference_pairs"],
        "collator": ["preference", "reward_pairs", "unpaired", "rows"],
        "reward": ["reward_model"],
        "task": ["preference", "grpo", "reward_model", "kto"]}


def test_importing_the_plugin_imports_nothing_heavy(modules_imported_by, trl_site):
    code = ("import fturun_trl; fturun_trl.preference_task(); fturun_trl.grpo_task(); "
            "fturun_trl.reward_model_task(); fturun_trl.kto_task()")
    assert modules_imported_by(trl_site, code, ("torch", "transformers", "trl", "datasets")) \
        == []


def test_schema_has_the_task_and_its_settings(run_fturun, trl_site):
    result = run_fturun("schema", env=site_env(trl_site))
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert "preference" in schema["properties"]["task"]["enum"]
    training = schema["$defs"]["training"]["properties"]
    # beta and loss_type mean other things to DPO, GRPO and KTO: checked per task
    assert training["beta"]["x-fturun-task"] == ["preference", "grpo", "kto"]
    per_task = {(c["if"]["properties"]["task"]["const"], key): setting
                for c in schema["allOf"]
                for key, setting in c["then"]["properties"]["training"]["properties"].items()}
    assert per_task["preference", "beta"]["default"] == 0.1
    assert per_task["grpo", "beta"]["default"] == 0.0
    assert "sigmoid" in per_task["preference", "loss_type"]["items"]["enum"]
    assert "dapo" in per_task["grpo", "loss_type"]["enum"]
    assert training["num_generations"]["x-fturun-task"] == ["grpo"]
    assert "x-fturun-task" not in training["learning_rate"]
    columns = schema["properties"]["data"]["properties"]["columns"]["properties"]
    assert {"prompt", "chosen", "rejected"} <= set(columns)


def test_dpo_settings_schema_is_fresh(capsys):
    """The committed dpo_settings.schema.json is what the installed TRL's DPOConfig gives (after
    a new lock: python -m fturun_trl.settings); with other versions than the locked ones the
    plugin generates its own (tests/test_dependency_drift.py), and this check does not apply.
    ``python -m fturun_trl.settings --check`` in this process: the module loaded from
    plugins/fturun-trl/src under a name of its own (so it reads the committed file, whatever
    ``fturun_trl`` another test imported)."""
    import importlib.util

    from helpers import locked_versions

    from fturun.schema.installed import installed_versions

    locked, installed = locked_versions(), installed_versions(("trl", "transformers"))
    if any(locked.get(p) != v for p, v in installed.items()):
        pytest.skip(f"installed {installed} are not the locked versions")
    source = PLUGIN_SRC / "src" / "fturun_trl" / "settings.py"
    spec = importlib.util.spec_from_file_location("fturun_trl_committed_settings", source)
    settings = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = settings  # a dataclass in it looks its module up there
    try:
        spec.loader.exec_module(settings)
    finally:
        sys.modules.pop(spec.name, None)
    assert settings.SCHEMA_FILE == source.with_name("dpo_settings.schema.json")
    before = settings.SCHEMA_FILE.read_text()
    code = settings.main(["--check"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert settings.SCHEMA_FILE.read_text() == before  # --check writes nothing


def test_preference_config_keeps_training_arguments_defaults():
    sys.path.insert(0, str(PLUGIN_SRC / "src"))
    try:
        from fturun_trl.trainer import PreferenceConfig
        from transformers import TrainingArguments
    finally:
        sys.path.remove(str(PLUGIN_SRC / "src"))
    config = PreferenceConfig(output_dir="unused", use_cpu=True)
    plain = TrainingArguments(output_dir="unused", use_cpu=True)
    for key in ("learning_rate", "logging_steps", "bf16", "gradient_checkpointing"):
        assert getattr(config, key) == getattr(plain, key), key
    assert config.beta == 0.1 and config.loss_type == ["sigmoid"]


def test_bad_dpo_settings_are_located(run_fturun, trl_site):
    result = run_fturun("validate", RECIPES / "dpo.json", "training.beta=0",
                        "training.loss_type=sigmod", "training.bet=1",
                        "data.columns.text=question", env=site_env(trl_site))
    assert result.returncode == 2
    err = result.stdout + result.stderr
    assert "$.training.beta: must be > 0, got 0" in err
    assert "$.training.loss_type: \"sigmod\" is not one of" in err and \
        "(did you mean 'sigmoid'?)" in err
    assert "$.training.bet: unknown key 'bet' (did you mean 'beta'?)" in err
    assert ("$.data.columns.text: task 'preference' reads the columns prompt, chosen, "
            "rejected, not text") in err


def test_dpo_settings_of_another_task_are_refused(run_fturun, trl_site):
    result = run_fturun("validate", RECIPES / "sft.json", "training.beta=0.2",
                        env=site_env(trl_site))
    assert result.returncode == 2
    assert ("$.training.beta: training.beta is a setting of task preference or grpo or kto, not "
            "'causal-lm'; remove it or set 'task'") in result.stdout + result.stderr


def test_without_the_plugin_the_task_is_refused_naming_the_distribution(run_fturun, tmp_path):
    validate = run_fturun("validate", RECIPES / "dpo.json")
    assert validate.returncode == 2
    assert ("$.task (line 3, col 11): 'preference' is not a registered task: it comes with "
            "the plugin distribution fturun-trl, which is not installed: pip install fturun-trl "
            "(from a fturun checkout: pip install plugins/fturun-trl)") in validate.stdout + \
        validate.stderr
    run = run_fturun(RECIPES / "dpo.json", f"training.output_dir={tmp_path / 'out'}")
    assert run.returncode == 2 and "pip install plugins/fturun-trl" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_pairs_are_seeded_and_reject_another_answer(trl_site):
    sys.path.insert(0, str(trl_site))
    try:
        from fturun_trl.datasets import make_pairs, question_answers
    finally:
        sys.path.remove(str(trl_site))
    from fturun.recipe.paths import resolve_path

    folder = Path(resolve_path("package:chatterbot_corpus/data/english"))
    qa = question_answers(sorted(folder.glob("*.yml")), "conversations", "utf-8")
    assert len(qa) > 300
    pairs = make_pairs(qa, seed=0)
    assert pairs == make_pairs(qa, seed=0) and pairs != make_pairs(qa, seed=1)
    answers = {answer for _, answer in qa}
    for (question, answer), pair in zip(qa, pairs):
        assert pair["prompt"] == question and pair["chosen"] == answer
        assert pair["rejected"] != answer and pair["rejected"] in answers


# --------------------------------------------------------------------------------------------
# end to end: the SFT recipe, then the DPO recipe on its model


@pytest.fixture(scope="module")
def sft_model(run_fturun, trl_site, tmp_path_factory):
    """The plugin's SFT recipe, tiny: the model folder DPO starts from."""
    out = tmp_path_factory.mktemp("trl-sft") / "sft"
    result = run_fturun(RECIPES / "sft.json", *SFT_TINY, f"training.output_dir={out}",
                        env=site_env(trl_site), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "model"


@pytest.fixture
def dpo(run_fturun):
    """``dpo(site, model, out, *extra)``: the plugin's DPO recipe, tiny, from ``model``."""
    def run(site, model, out, *extra):
        result = run_fturun(RECIPES / "dpo.json", *DPO_TINY, f"model.params.path={model}",
                            f"training.output_dir={out}", *extra, env=site_env(site),
                            timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        return result
    return run


def eval_history(out) -> dict:
    """step -> the eval metrics logged at that step (the Trainer's log history)."""
    rows = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {row["step"]: row for row in rows if "eval_rewards/margins" in row}


@pytest.mark.slow
def test_sft_then_dpo_margins_rise_and_reach_mlflow(dpo, trl_site, sft_model, mlflow_server,
                                                   tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "dpo"
    dpo(trl_site, sft_model, out, f"tracking.tracking_uri={mlflow_server}",
        "tracking.experiment=trl-dpo")
    history = eval_history(out)
    assert sorted(history) == [0, 3, 6]
    start = history[0]
    assert start["eval_rewards/margins"] == pytest.approx(0, abs=1e-6)  # policy == reference
    assert start["eval_rewards/accuracies"] == 0  # no pair has a positive margin yet
    # training margins (24 pairs, 2 epochs: the last steps see pairs trained on before) rise
    # from 0 at the first step, measured before any update
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    margins = {row["step"]: row["rewards/margins"] for row in logs if "rewards/margins" in row}
    assert margins[1] == pytest.approx(0, abs=1e-6)
    assert (margins[5] + margins[6]) / 2 > 0.01

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("trl-dpo")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["args.beta"] == "0.1"
    for key in ("eval_rewards/margins", "eval_rewards/accuracies", "eval_rewards/chosen"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == [0, 3, 6], key
    tracked = client.get_metric_history(run.info.run_id, "rewards/margins")
    assert max(tracked, key=lambda m: m.step).value == pytest.approx(margins[6], rel=1e-6)
    train_steps = [m.step for m in client.get_metric_history(run.info.run_id,
                                                             "rewards/margins")]
    assert sorted(train_steps) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(dpo, trl_site, sft_model,
                                                              tmp_path):
    straight = tmp_path / "straight"
    no_start_eval = ["tracking.enabled=false", "training.eval_on_start=false"]
    dpo(trl_site, sft_model, straight, *no_start_eval)
    expected = json.loads((straight / "eval_results.json").read_text())

    # the run cut short after its first checkpoint: only checkpoint-3 survived
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    result = dpo(trl_site, sft_model, resumed, *no_start_eval, "--resume")
    assert "resuming from" in result.stdout
    got = json.loads((resumed / "eval_results.json").read_text())
    for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies",
                "eval_logps/chosen"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key


def test_task_record_checks_its_own_trainer_settings_and_columns():
    """The Task fields API 1.1 added: a Trainer-classes callable is taken, and bad
    training_settings, trainer_metrics and columns fail the plugin saying what is wrong."""
    from fturun.api import PluginError, Task
    from fturun.plugin.tasks import check_task

    def base(**fields):
        return Task(name="pairs", description="d", model_class="AutoModelForCausalLM",
                    tokenize=len, metric_inputs=len, **fields)

    task = check_task(base(trainer=lambda: (dict, list), columns=("prompt", "chosen"),
                           training_settings={"beta": {"type": "number"}}), "p")
    assert task.trainer_classes() == (dict, list)
    with pytest.raises(PluginError) as raised:
        check_task(base(trainer="dpo", training_settings={"beta": 1},
                        trainer_metrics=["eval_x"], columns=["text"]), "p")
    message = str(raised.value)
    assert "trainer 'dpo' is neither one of trainer, seq2seq nor a callable" in message
    assert "training_settings is not a dict of setting name -> JSON Schema" in message
    assert "trainer_metrics are metric names without the eval_ prefix" in message
    assert "columns name the task's own columns, not text" in message
