"""Reliability, round 3 (issue 35): a fresh run never deletes or rewrites a file another run wrote
unless --overwrite; the new features' mistakes are refused with a message that says where (exit
2 for a recipe or usage mistake, 1 for a run-time failure), never a traceback, and before
anything trains where the mistake was knowable before; a refused start leaves no MLflow run.
The guarantees are described in docs/reliability-round3.md."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import MODEL, RECIPES

LORA = RECIPES / "lora_cls.json"
SFT = RECIPES / "sft_chat.json"
TINY = ["data.max_train_samples=32", "data.max_eval_samples=16", "data.max_length=32",
        "training.per_device_train_batch_size=16"]
NO_EVAL = ["training.eval_strategy=no", "training.load_best_model_at_end=false"]
NO_DATA = 'data.train={"name": "files", "params": {"path": "/nonexistent/*.jsonl"}}'


def _no_traceback(*texts):
    for text in texts:
        assert "Traceback" not in text, text[-3000:]


def _db_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _mlflow_runs(db: Path) -> list:
    """The MLflow runs in a SQLite store ([] when the database was never created)."""
    if not db.exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


# --------------------------------------------------------------------------------------------
# a fresh start never deletes or rewrites another run's files


def test_every_record_of_an_earlier_run_stops_a_fresh_start(tmp_path):
    from fturun.run.checkpoints import other_run_outputs, refusal_text

    out = tmp_path / "run"
    assert other_run_outputs(str(out)) == []
    out.mkdir()
    (out / "notes.txt").write_text("not fturun's: never touched, so it does not count")
    (out / "check_batch.jsonl").write_text("{}")  # fturun check's, not a run's
    assert other_run_outputs(str(out)) == []
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (out / "mlflow_run.json").write_text('{"run_id": "abc"}')
    found = other_run_outputs(str(out))
    assert found == ["metrics.jsonl", "mlflow_run.json"]
    text = refusal_text(str(out), found)
    assert f"{out} holds the records of an earlier run (metrics.jsonl, mlflow_run.json); a " \
           "fresh run would delete or rewrite them" in text
    assert "--resume" not in text  # nothing to resume from
    assert "another training.output_dir" in text and "--overwrite" in text
    (out / "checkpoint-3").mkdir()  # incomplete (a crash while saving): still another run's
    (out / "model.partial").mkdir()
    found = other_run_outputs(str(out))
    assert found == ["checkpoint-3", "model.partial", "metrics.jsonl", "mlflow_run.json"]
    assert "checkpoints of an earlier run (checkpoint-3) and its records (model.partial, " \
           "metrics.jsonl, mlflow_run.json)" in refusal_text(str(out), found)


def _digest(folder: Path) -> dict:
    """Every file under ``folder`` -> (sha256, mtime): every byte, and no rewrite."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                               p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """Finished runs of each kind: a model saved (with checkpoints), no model (save_model
    false), checkpoints only (an unfinished run: its final files gone, as after a kill), metrics
    only (a run that failed before its first checkpoint)."""
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    root = tmp_path_factory.mktemp("kinds")
    common = [*TINY, *NO_EVAL, "training.max_steps=2", "training.save_strategy=steps",
              "training.save_steps=1", "tracking.enabled=true",
              f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}"]
    kinds = {}
    for kind, extra in (("model", []), ("no-model", ["output.save_model=false"])):
        plugins._DEFAULT = None
        assert main([str(LORA), *common, *extra, f"training.output_dir={root / kind}"]) == 0
        kinds[kind] = root / kind
    checkpoints = root / "checkpoints-only"
    shutil.copytree(root / "no-model", checkpoints)
    for path in checkpoints.iterdir():
        if not path.name.startswith("checkpoint-") and path.name != "mlflow_run.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    kinds["checkpoints-only"] = checkpoints
    metrics = root / "metrics-only"
    metrics.mkdir()
    for name in ("metrics.jsonl", "mlflow_run.json"):
        shutil.copy(root / "no-model" / name, metrics / name)
    kinds["metrics-only"] = metrics
    return kinds


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["model", "no-model", "checkpoints-only", "metrics-only"])
def test_a_failing_fresh_run_leaves_every_byte_of_an_earlier_run(finished_runs, kind, cli,
                                                                  tmp_path):
    out = finished_runs[kind]
    before = _digest(out)
    assert "mlflow_run.json" in before
    # the case: a data glob that matches nothing, tracked, without --overwrite
    code, stdout, err = cli(LORA, *TINY, NO_DATA, f"training.output_dir={out}",
                            "tracking.enabled=true", f"tracking.tracking_uri={_db_uri(tmp_path)}")
    _no_traceback(stdout, err)
    assert code == 2, err
    assert f"{out} holds" in err and "a fresh run would delete or rewrite them" in err
    assert "--overwrite" in err
    assert _digest(out) == before
    assert _mlflow_runs(tmp_path / "mlflow.db") == []  # refused before any MLflow run


@pytest.mark.slow
def test_a_fresh_run_that_fails_before_training_leaves_nothing_to_refuse(cli, tmp_path):
    out = tmp_path / "out"
    tracking = ["tracking.enabled=true", f"tracking.tracking_uri={_db_uri(tmp_path)}"]
    code, stdout, err = cli(LORA, *TINY, NO_DATA, f"training.output_dir={out}", *tracking)
    _no_traceback(stdout, err)
    assert code == 1 and "no files match /nonexistent/*.jsonl" in err
    # its MLflow link pointed at a run that trained nothing: gone, so the fixed run starts
    assert not (out / "mlflow_run.json").exists()
    (failed,) = _mlflow_runs(tmp_path / "mlflow.db")
    assert failed.info.status == "FAILED"


# --------------------------------------------------------------------------------------------
# settings a library validates: refused before loading, at the key or the override


@pytest.mark.parametrize("override,where,message", [
    ("model.params.attn_implementation=bogus", "$.model.params.attn_implementation",
     "'bogus' is not an attention implementation"),
    ("training.torch_compile_backend=inductr", "$.training.torch_compile_backend",
     "'inductr' is not a torch.compile backend (did you mean 'inductor'?)"),
    ("training.torch_compile_mode=fastest", "$.training.torch_compile_mode",
     "'fastest' is not a torch.compile mode; known: default"),
    ('model.params.config_overrides={"hidden_dropout_prob": "high"}',
     "$.model.params.config_overrides.hidden_dropout_prob",
     "BertConfig.hidden_dropout_prob cannot be 'high'"),
    ('model.params.config_overrides={"max_position_embeddings": 4.5}',
     "$.model.params.config_overrides.max_position_embeddings",
     "BertConfig.max_position_embeddings cannot be 4.5: TypeError: Field "
     "'max_position_embeddings' expected int, got float (value: 4.5) (it is 512 now)"),
    ('model.params.config_overrides={"rope_scaling": {"rope_type": "linear", "factor": 2.0}}',
     "$.model.params.config_overrides.rope_scaling",
     "BertConfig has no rotary position embeddings, so rope scaling would do nothing"),
    ('model.params.config_overrides={"hiden_dropout_prob": 0.2}',
     "$.model.params.config_overrides.hiden_dropout_prob",
     "BertConfig has no field 'hiden_dropout_prob' (did you mean 'hidden_dropout_prob'?)"),
    ('tracking.registered_model_name=team/bbc', "$.tracking.registered_model_name",
     "'team/bbc' cannot name a registered model: MLflow refuses '/' and ':'"),
])
def test_a_setting_a_library_refuses_is_refused_before_loading(cli, tmp_path, override, where,
                                                                message):
    out = tmp_path / "out"
    code, stdout, err = cli(LORA, *TINY, override, f"training.output_dir={out}",
                            "tracking.enabled=true", f"tracking.tracking_uri={_db_uri(tmp_path)}")
    _no_traceback(stdout, err)
    assert code == 2, err
    assert f"override '{override}'::{where}: {message}" in err
    assert "data:" not in stdout  # nothing loaded
    assert _mlflow_runs(tmp_path / "mlflow.db") == []
    assert not (out / "mlflow_run.json").exists()


def test_a_refusal_is_located_at_the_recipe_line(tmp_path, cli):
    recipe = tmp_path / "recipe.json"
    text = ('{\n  "extends": "' + str(LORA) + '",\n'
            '  "model": {"name": "pretrained", "params": {"path": "' + MODEL + '",\n'
            '    "attn_implementation": "flash_attention_2"}}\n}\n')
    recipe.write_text(text)
    col = text.splitlines()[3].index('"flash') + 1
    code, stdout, err = cli(recipe, *TINY, "tracking.enabled=true",
                            f"tracking.tracking_uri={_db_uri(tmp_path)}",
                            f"training.output_dir={tmp_path / 'out'}")
    _no_traceback(stdout, err)
    assert code == 2  # the hardware rule: flash attention needs a GPU
    assert f"{recipe}::$.model.params.attn_implementation (line 4, col {col}): " \
           "'flash_attention_2'" in err
    assert _mlflow_runs(tmp_path / "mlflow.db") == []  # a refused start leaves no MLflow run
    # the same value from an override is located at the override
    code, _, err = cli(LORA, *TINY, "model.params.attn_implementation=flash_attention_2",
                       "tracking.enabled=false", f"training.output_dir={tmp_path / 'out'}")
    assert code == 2
    assert "override 'model.params.attn_implementation=flash_attention_2'::" \
           "$.model.params.attn_implementation: 'flash_attention_2'" in err


def test_rope_scaling_transformers_would_only_warn_about_is_refused():
    from transformers import LlamaConfig

    from fturun.run.preflight import config_override_problems

    config = LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32,
                         num_attention_heads=2)
    where = "$.model.params.config_overrides.rope_scaling"
    assert config_override_problems(config, {"rope_scaling": {
        "rope_type": "linear", "factor": -2.0}}) == [
        (where, "factor must be a number >= 1 (the scale of the positions), not -2.0")]
    (problem,) = config_override_problems(config, {"rope_scaling": {"rope_type": "bogus",
                                                                    "factor": 2.0}})
    assert problem[0] == where and "transformers refuses this rope scaling" in problem[1]
    assert "bogus" in problem[1]
    assert config_override_problems(config, {"rope_scaling": {"rope_type": "linear",
                                                              "factor": 2.0}}) == []
    assert config.rope_parameters["rope_type"] == "default"  # the config itself is untouched


def test_generation_longer_than_the_models_positions_is_refused_before_loading(cli, tmp_path):
    code, stdout, err = cli(SFT, "generation.max_new_tokens=300", "tracking.enabled=false",
                            f"training.output_dir={tmp_path / 'out'}")
    _no_traceback(stdout, err)
    assert code == 2
    assert "override 'generation.max_new_tokens=300'::$.generation.max_new_tokens: 300 new " \
           "tokens do not fit the model's 256 positions (GPT2Config.max_position_embeddings): " \
           "the prompt needs some too; set it below 256" in err
    assert "data:" not in stdout


def test_a_long_prompt_is_cut_to_fit_the_positions(registry):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from fturun.builtin.task_generation import generate
    from fturun.recipe.paths import resolve_path
    from fturun.testing import make_context

    tokenizer = AutoTokenizer.from_pretrained(resolve_path(MODEL))
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=24,
                                       vocab_size=len(tokenizer)))
    context = make_context(recipe={"generation": {"max_new_tokens": 8}})
    prompt = " ".join(["word"] * 60)  # ~60 tokens: past the 24 positions
    (sample,) = generate(model, tokenizer, context, [(prompt, None)], decoder_only=True,
                         continue_text=True)
    assert sample["prompt"] == prompt and isinstance(sample["generated"], str)


@pytest.mark.slow
def test_a_metric_of_another_task_is_refused_before_training(cli, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli(LORA, *TINY, 'metrics=["accuracy", "seqeval"]',
                            "tracking.enabled=false", f"training.output_dir={out}")
    _no_traceback(stdout, err)
    assert code == 2
    assert "::$.metrics[1]: metric 'seqeval' cannot score the outputs of task " \
           "'sequence-classification'" in err
    assert "fturun components metric" in err
    assert "train_runtime" not in stdout and not (out / "trainer_state.json").exists()


def test_chat_template_file_that_is_not_utf8(tmp_path):
    from fturun.chat.templates import read_template
    from fturun.core.errors import RecipeRuntimeError

    (tmp_path / "t.jinja").write_bytes("{{ 'caf\xe9' }}".encode("latin-1"))
    with pytest.raises(RecipeRuntimeError) as caught:
        read_template("t.jinja", str(tmp_path))
    assert "data.chat_template: template file 't.jinja'" in str(caught.value)
    assert "is not UTF-8 text (invalid continuation byte at byte 7); save it as UTF-8" in \
        str(caught.value)


def test_mixing_weights_near_the_float_maximum(registry):
    from fturun.data import prepare_datasets
    from fturun.testing import make_context

    english = "package:chatterbot_corpus/data/english/"
    data = {"train": [{"dataset": {"name": "conversations", "params": {"path": english + n}},
                       "weight": 1e308} for n in ("ai.yml", "humor.yml")],
            "columns": {"text": "prompt", "text_pair": "response"}}
    context = make_context(recipe={"task": "causal-lm", "data": data}, task="causal-lm",
                           seed=42)
    prepare_datasets(data, registry, context)
    assert [s.share for s in context.train_mix.sources] == [0.5, 0.5]


# --------------------------------------------------------------------------------------------
# odd data files


def _rows(n=40):
    return [{"text": f"some text number {i} about things", "label": "ab"[i % 2]}
            for i in range(n)]


def test_a_broken_json_lines_file_is_located_at_its_line_and_column(run_fturun, tmp_path):
    lines = [json.dumps(row) for row in _rows()]
    lines[20] = '{"text": "broken row here", "label": oops}'
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # a real process: datasets logs the failure through its own logger as well
    result = run_fturun(LORA, *TINY, f'data.train={{"name": "files", "params": '
                        f'{{"path": "{path}"}}}}', "tracking.enabled=false",
                        f"training.output_dir={tmp_path / 'out'}", timeout=300)
    _no_traceback(result.stdout, result.stderr)
    assert result.returncode == 1
    assert f"error: {path}:21:38: Expecting value; fix that line" in result.stderr
    from fturun.builtin.json_lines import json_problem

    document = tmp_path / "rows.json"
    document.write_text('[\n  {"text": "a"},\n  {"text": "b",}\n]\n')
    assert json_problem([str(document)]) == \
        f"{document}:3:16: Expecting property name enclosed in double quotes; fix the JSON there"


@pytest.mark.parametrize("mixed", [True, False])
def test_labels_that_are_lists_are_refused(cli, tmp_path, mixed):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({**row, "label": [row["label"]] if i > 5 or not mixed
                                        else row["label"]}) + "\n"
                            for i, row in enumerate(_rows())))
    code, stdout, err = cli(LORA, *TINY, f'data.train={{"name": "files", "params": '
                            f'{{"path": "{path}"}}}}', "tracking.enabled=false",
                            f"training.output_dir={tmp_path / 'out'}")
    _no_traceback(stdout, err)
    assert code == 1
    assert "data.train: column 'label' holds lists or objects (in some rows at least), not " \
           "one label per row" in err


def test_a_symlink_loop_in_a_text_folder(cli, tmp_path):
    for label in ("a", "b"):
        (tmp_path / "tf" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "tf" / label / f"{i}.txt").write_text(f"{label} text {i}")
    os.symlink("loop.txt", tmp_path / "tf" / "a" / "loop.txt")
    code, stdout, err = cli(LORA, *TINY, f'data.train={{"name": "text_folder", "params": '
                            f'{{"path": "{tmp_path / "tf"}"}}}}', "tracking.enabled=false",
                            f"training.output_dir={tmp_path / 'out'}")
    _no_traceback(stdout, err)
    assert code == 1
    assert f"data.train: dataset 'text_folder': cannot read {tmp_path / 'tf' / 'a' / 'loop.txt'}" \
           ": Too many levels of symbolic links" in err


# --------------------------------------------------------------------------------------------
# tracking stores, runs, promote, components


def test_a_tracking_uri_with_no_store(cli, tmp_path):
    started = time.monotonic()
    code, stdout, err = cli("runs", "--tracking-uri", "bogus://tracker")
    _no_traceback(stdout, err)
    assert code == 2
    assert "tracking URI 'bogus://tracker': MLflow has no store for 'bogus://'" in err
    code, stdout, err = cli(LORA, *TINY, "tracking.tracking_uri=bogus://tracker",
                            f"training.output_dir={tmp_path / 'out'}")
    _no_traceback(stdout, err)
    assert code == 2 and "MLflow has no store for 'bogus://'" in err
    assert "data:" not in stdout
    assert time.monotonic() - started < 30


def test_runs_on_a_missing_database_creates_nothing(cli, tmp_path):
    db = tmp_path / "nonexistent" / "dir" / "mlflow.db"
    code, stdout, err = cli("runs", "--tracking-uri", f"sqlite:///{db}")
    _no_traceback(stdout, err)
    assert code == 2
    assert f"there is no MLflow database at {db}, so no runs were tracked there" in err
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.subprocess  # chattr makes the database read-only even for root
def test_runs_on_a_database_mlflow_cannot_write(cli, tmp_path):
    import sqlite3

    folder = tmp_path / "ro"
    folder.mkdir()
    sqlite3.connect(folder / "mlflow.db").close()
    # chattr +i stops root too (a read-only mode bit would not)
    if subprocess.run(["chattr", "+i", str(folder / "mlflow.db"), str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        started = time.monotonic()
        code, stdout, err = cli("runs", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")
        elapsed = time.monotonic() - started
    finally:
        subprocess.run(["chattr", "-i", str(folder / "mlflow.db"), str(folder)])
    _no_traceback(stdout, err)
    assert code == 1 and elapsed < 10
    assert f"MLflow cannot write the SQLite database {folder / 'mlflow.db'}" in err
    assert err.count("\n") <= 2  # one paragraph


def test_runs_on_a_file_that_is_not_a_database(cli, tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_text("notes, not a database: a wrong --tracking-uri\n" * 4)
    code, stdout, err = cli("runs", "--tracking-uri", f"sqlite:///{db}")
    _no_traceback(stdout, err)
    assert code == 1
    assert err.startswith(f"error: the MLflow store at sqlite:///{db} failed (DatabaseError: ")
    assert "file is not a database" in err and err.count("\n") == 1  # one paragraph


def _argparse_exit(capsys, *args):
    """``(exit code, stderr)`` of a command line that argparse refuses (it exits itself)."""
    from fturun.cli import main

    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "0", "many"])
def test_runs_max_is_a_positive_number(capsys, value):
    code, err = _argparse_exit(capsys, "runs", "--max", value)
    _no_traceback(err)
    assert code == 2
    assert f"argument --max: '{value}' is not a whole number of 1 or more" in err


def test_launch_numbers_are_checked(capsys):
    code, err = _argparse_exit(capsys, "launch", "--master-port", "70000", LORA)
    assert code == 2 and "'70000' is not a whole number from 1 to 65535" in err
    code, err = _argparse_exit(capsys, "launch", "--nnodes", "0", LORA)
    assert code == 2 and "argument --nnodes: '0' is not a whole number of 1 or more" in err


@pytest.mark.parametrize("name,message", [
    ("team/bbc", "--name 'team/bbc' cannot name a registered model: MLflow refuses '/' and ':' "
                 "in names (they separate the parts of models:/NAME@ALIAS); e.g. 'team-bbc'"),
    ("", "--name '' is empty: name the registered model"),
])
def test_promote_refuses_names_mlflow_refuses(cli, tmp_path, name, message):
    import sqlite3

    sqlite3.connect(tmp_path / "mlflow.db").close()
    code, stdout, err = cli("promote", "0123456789abcdef", "champion", "--name", name,
                            "--tracking-uri", _db_uri(tmp_path))
    _no_traceback(stdout, err)
    assert code == 2 and message in err


def test_components_lists_the_tasks(cli):
    code, stdout, err = cli("components", "task")
    assert code == 0, err
    assert stdout.startswith("tasks:\n")
    for task in ("sequence-classification", "token-classification", "causal-lm", "seq2seq"):
        assert f"  {task} " in stdout
    assert "model class AutoModelForTokenClassification; default metrics seqeval" in stdout
    code, stdout, _ = cli("components", "tasks", "--json")
    names = [t["name"] for t in json.loads(stdout)["task"]]
    assert "masked-lm" in names
    code, _, err = cli("components", "taks")
    assert code == 2 and "(did you mean 'task'?)" in err


# --------------------------------------------------------------------------------------------
# secrets in artifacts


def test_every_uploaded_text_file_is_redacted(tmp_path, monkeypatch):
    from fturun.core.redaction import redacted_for_upload

    secret = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-from-the-environment")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_card.md").write_text(f"# a model\n\nmade with {secret}\n")
    (folder / "config.json").write_text('{"note": "s3cr3t-from-the-environment"}')
    (folder / "weights.safetensors").write_bytes(b"\x00" + secret.encode())  # binary: as is
    with redacted_for_upload(str(folder)) as upload:
        assert upload != str(folder) and os.path.basename(upload) == "model"
        sent = Path(upload)
        assert (sent / "model_card.md").read_text() == "# a model\n\nmade with ***\n"
        assert (sent / "config.json").read_text() == '{"note": "***"}'
        assert (sent / "weights.safetensors").read_bytes() == b"\x00" + secret.encode()
    assert not Path(upload).exists()
    assert secret in (folder / "model_card.md").read_text()  # the local copy is the user's
    clean = tmp_path / "clean.json"
    clean.write_text("{}")
    with redacted_for_upload(str(clean)) as upload:
        assert upload == str(clean)


@pytest.mark.slow
def test_the_logged_models_card_carries_no_secret(mlflow_server, cli, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    secret = "hf_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
    code, _, err = cli(LORA, *TINY, *NO_EVAL, "training.max_steps=1",
                       "training.save_strategy=no", f"description=BBC topics {secret}",
                       f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=r3-card",
                       f"training.output_dir={tmp_path / 'out'}")
    assert code == 0, err
    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("r3-card").experiment_id])
    (output,) = run.outputs.model_outputs
    mlflow.set_tracking_uri(mlflow_server)
    local = mlflow.artifacts.download_artifacts(f"models:/{output.model_id}",
                                                dst_path=str(tmp_path / "dl"))
    texts = [p.read_text(errors="ignore") for p in Path(local).rglob("*")
             if p.is_file() and p.suffix in (".md", ".json", ".yaml", ".txt", "")]
    assert texts and not any(secret in text for text in texts)
    assert any("BBC topics ***" in text for text in texts)  # the card, redacted


# --------------------------------------------------------------------------------------------
# a resume's train_loss; a search's parent run


@pytest.mark.slow
def test_train_loss_after_a_resume_equals_the_uninterrupted_runs(cli, tmp_path):
    from mlflow.tracking import MlflowClient

    args = [*TINY, *NO_EVAL, "training.max_steps=4", "training.save_strategy=steps",
            "training.save_steps=2", "training.logging_steps=1",
            f"tracking.tracking_uri={_db_uri(tmp_path)}"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    code, _, err = cli(LORA, *args, "tracking.experiment=straight",
                       f"training.output_dir={straight}")
    assert code == 0, err
    code, _, err = cli(LORA, *args, "tracking.experiment=killed",
                       f"training.output_dir={killed}")
    assert code == 0, err
    # as after a SIGKILL past the checkpoint at step 2: its later files never written
    for path in killed.iterdir():
        if path.name not in ("checkpoint-2", "mlflow_run.json", "metrics.jsonl"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    code, stdout, err = cli(LORA, *args, "tracking.experiment=killed",
                            f"training.output_dir={killed}", "--resume")
    assert code == 0, err
    assert "resuming from" in stdout

    def train_loss(folder):
        return json.loads((folder / "train_results.json").read_text())["train_loss"]

    assert train_loss(killed) == pytest.approx(train_loss(straight), abs=1e-6)
    client = MlflowClient(tracking_uri=_db_uri(tmp_path))
    for name, folder in (("straight", straight), ("killed", killed)):
        (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        assert run.data.metrics["train_loss"] == pytest.approx(train_loss(folder), abs=1e-6)


@pytest.mark.slow
def test_a_searchs_parent_run_is_named_after_its_study(cli, tmp_path):
    from mlflow.tracking import MlflowClient

    code, _, err = cli(RECIPES / "search_cls.json", *TINY, "training.max_steps=1",
                       "search.n_trials=1", "search.study_name=my-study",
                       "tracking.run_name=not-the-parents", "tracking.experiment=r3-search",
                       f"tracking.tracking_uri={_db_uri(tmp_path)}",
                       f"training.output_dir={tmp_path / 'out'}")
    assert code == 0, err
    client = MlflowClient(tracking_uri=_db_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("r3-search").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_name for r in parents] == ["my-study"]
