"""The fault matrix: every stage of a run made to fail (the output folder, the data, the model, a
training step, a checkpoint save, the model save, an artifact upload), each run in-process on a
real `mlflow server` with tiny settings. Each asserts the documented exit code, a one-paragraph
error without a traceback for a fault of the machine, an MLflow run that ends FAILED (never left
RUNNING), no half-written model or checkpoint taken as complete, and nothing already logged lost.

Faults are real where the machine allows it: a read-only folder and a full disk are tmpfs mounts
(the tests run as root, which ignores permissions, so a chmod-ed folder would not do; a test
that needs a mount is skipped where mounting is refused), a folder that cannot be created sits
under a regular file. Where a real fault cannot be made at the chosen moment, it is injected by
a test plugin registered in-process (a callback component) or by monkeypatching the one call
that fails."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
from helpers import RECIPES, read_json

from fturun import hookimpl

TINY = ["data.max_train_samples=16", "data.max_eval_samples=8", "data.max_length=32",
        "training.max_steps=4", "training.eval_strategy=steps", "training.eval_steps=2",
        "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1",
        "training.per_device_train_batch_size=8", "training.load_best_model_at_end=false",
        "tracking.log_model=false"]
LORA = RECIPES / "lora_cls.json"


# ------------------------------------------------------------------------------------------
# the tools: a fault plugin, tmpfs mounts, the MLflow runs of an experiment


def _fail(kind: str, where: str):
    if kind == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device", where)
    raise RuntimeError(f"injected failure at {where}")


def fill_disk(folder: str) -> None:
    """Write a ballast file into ``folder`` until its disk is really full."""
    with open(os.path.join(folder, "ballast"), "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def build_fault(params, context):
    """A callback that, at training step ``step``, raises (``raise``: "runtime" or "enospc")
    or fills the disk holding ``fill`` (every later write there meets a real full disk)."""
    from transformers import TrainerCallback

    class Fault(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step != params["step"]:
                return
            if params.get("fill"):
                fill_disk(params["fill"])
            else:
                _fail(params.get("raise", "runtime"), f"step {state.global_step}")

    return Fault()


class FaultPlugin:
    """The test plugin: the ``fault`` callback component."""

    @hookimpl
    def fturun_register_callbacks(self, register):
        register("fault", build_fault,
                 {"type": "object", "required": ["step"],
                  "properties": {"step": {"type": "integer"},
                                 "raise": {"enum": ["runtime", "enospc"]},
                                 "fill": {"type": "string"}}},
                 "Fail at a training step (tests)")


@pytest.fixture
def with_faults(monkeypatch):
    """The default plugins plus :class:`FaultPlugin`, for the in-process CLI."""
    from fturun.plugin import manager as plugins

    loaded = plugins.load_plugins(extra_plugins={"faults": FaultPlugin()})
    monkeypatch.setattr(plugins, "default_plugins", lambda: loaded)
    return loaded


@pytest.fixture
def mount(tmp_path):
    """``mount(name, options)``: a fresh tmpfs at ``tmp_path/name`` (unmounted at the end);
    skips the test where this machine refuses mounts."""
    mounted = []

    def make(name, options):
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): this fault needs "
                        "a real read-only or full disk")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def tracked(server, name):
    return [f"tracking.tracking_uri={server}", f"tracking.experiment=faults-{name}"]


def runs_of(server, name):
    """The MLflow runs of experiment ``faults-NAME`` (none when it was never created)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name(f"faults-{name}")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def the_failed_run(server, name):
    """The one run of the experiment; it must have ended FAILED with its error tagged."""
    runs = runs_of(server, name)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags.get("fturun.error")
    return runs[0]


def steps_logged(server, run, key):
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(tracking_uri=server)
                  .get_metric_history(run.info.run_id, key))


def jsonl_steps(out, key):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return sorted(row["step"] for row in rows if key in row)


def one_paragraph(err: str, *expected: str) -> str:
    """The error line of ``err``: one paragraph, no traceback, holding each expected text."""
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------------------------------
# the output folder


@pytest.mark.subprocess  # starts its own process
def test_read_only_output_folder_fails_before_any_mlflow_run(cli, mlflow_server, mount):
    """A real read-only file system (a tmpfs mounted ro): one paragraph naming the folder, and
    no MLflow run is left behind, because the folder is checked before the run is created."""
    out = mount("ro", "ro,size=1m") / "out"
    code, _, err = cli(LORA, *TINY, f"training.output_dir={out}",
                       *tracked(mlflow_server, "read-only"))
    assert code == 1
    one_paragraph(err, str(out), "read-only file system (EROFS)", "training.output_dir")
    assert runs_of(mlflow_server, "read-only") == []


def test_output_folder_that_cannot_be_created(cli, mlflow_server, tmp_path):
    """The output folder's parent is a regular file: ENOTDIR, whoever is root."""
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "out"
    code, _, err = cli(LORA, *TINY, f"training.output_dir={out}",
                       *tracked(mlflow_server, "not-creatable"))
    assert code == 1
    one_paragraph(err, str(out), "is a file, not a folder (ENOTDIR)")
    assert runs_of(mlflow_server, "not-creatable") == []


def test_disk_full_right_after_the_run_opened(cli, mlflow_server, tmp_path, monkeypatch):
    """The folder was writable when checked, then ``mlflow_run.json`` cannot be written (the
    disk filled meanwhile: injected): the run just created is ended FAILED, not left
    RUNNING."""
    from fturun.tracking import tracker

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(tracker, "write_json", full)
    out = tmp_path / "out"
    code, _, err = cli(LORA, *TINY, f"training.output_dir={out}",
                       *tracked(mlflow_server, "record"))
    assert code == 1
    one_paragraph(err, "mlflow_run.json", "no space left on the device (ENOSPC")
    the_failed_run(mlflow_server, "record")


# ------------------------------------------------------------------------------------------
# the data and the model


@pytest.mark.parametrize("content,expected", [
    (None, "not found"),  # no file at all
    ("", "is empty (0 bytes)"),  # issue 17, item 9: a 0-byte csv
])
def test_missing_or_empty_data_file(cli, mlflow_server, tmp_path, content, expected):
    data = tmp_path / "train.csv"
    if content is not None:
        data.write_text(content)
    name = "no-data" if content is None else "empty-data"
    source = json.dumps({"name": "files", "params": {"path": str(data)}})
    code, _, err = cli(LORA, *TINY, f"data.train={source}", "data.columns.label=label",
                       f"training.output_dir={tmp_path / 'out'}", *tracked(mlflow_server, name))
    assert code == 1
    one_paragraph(err, str(data), expected)
    the_failed_run(mlflow_server, name)


def test_wrong_model_path(cli, mlflow_server, tmp_path):
    missing = tmp_path / "no-such-model"
    code, _, err = cli(LORA, *TINY, f"model.params.path={missing}",
                       f"training.output_dir={tmp_path / 'out'}",
                       *tracked(mlflow_server, "model"))
    assert code == 1
    one_paragraph(err, str(missing))
    the_failed_run(mlflow_server, "model")


# ------------------------------------------------------------------------------------------
# training, checkpoints, the model save, the uploads


def test_a_training_step_that_raises(cli, mlflow_server, tmp_path, with_faults):
    """A bug (a plugin's callback raising at step 3) is a bug: it propagates with its
    traceback (the process exits 1), and the run is FAILED with the error; the steps logged
    before it stay logged, and the checkpoint of step 2 is complete for --resume."""
    from fturun.run.checkpoints import latest_complete_checkpoint

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected failure at step 3"):
        cli(LORA, *TINY, f"training.output_dir={out}", *tracked(mlflow_server, "step"),
            'callbacks=[{"name": "fault", "params": {"step": 3}}]')
    run = the_failed_run(mlflow_server, "step")
    assert "RuntimeError: injected failure at step 3" in run.data.tags["fturun.error"]
    assert steps_logged(mlflow_server, run, "loss") == [1, 2] == jsonl_steps(out, "loss")
    assert latest_complete_checkpoint(str(out)) == str(out / "checkpoint-2")


@pytest.mark.subprocess  # starts its own process
def test_disk_full_during_training(cli, mlflow_server, mount, with_faults):
    """A real full disk: the disk is filled at step 3, so step 4's checkpoint meets ENOSPC
    (torch and safetensors report it in their own words). One paragraph, exit 1, the run
    FAILED (closing it needs error.txt, which cannot be written either), checkpoint-4 not
    taken as complete, checkpoint-2 kept, and the metrics of every step reach MLflow whatever
    metrics.jsonl could still take."""
    from fturun.run.checkpoints import latest_complete_checkpoint

    disk = mount("full", "size=64m")
    out = disk / "out"
    fault = {"name": "fault", "params": {"step": 3, "fill": str(disk)}}
    code, _, err = cli(LORA, *TINY, f"training.output_dir={out}", *tracked(mlflow_server, "full"),
                       f"callbacks={json.dumps([fault])}")
    assert code == 1
    one_paragraph(err, f"{out} (training)", "no space left on the device (ENOSPC",
                  "--resume continues")
    assert "cannot write error.txt" in err
    run = the_failed_run(mlflow_server, "full")
    assert "no space left" in run.data.tags["fturun.error"]
    assert steps_logged(mlflow_server, run, "loss") == [1, 2, 3, 4]
    assert jsonl_steps(out, "loss")[:2] == [1, 2]  # later lines only as far as the disk took
    assert latest_complete_checkpoint(str(out)) == str(out / "checkpoint-2")
    assert not (out / "model").exists()


def test_model_save_fails_and_error_txt_cannot_be_written(cli, mlflow_server, tmp_path,
                                                         monkeypatch):
    """Issue 17, item 4: the disk is full while the final model is saved (injected: the save
    writes part of the model, then ENOSPC), and again when the run's error.txt is written.
    The run still ends FAILED, no model/ appears (the part written is in model.partial), and
    what was logged stays."""
    from transformers import Trainer

    from fturun.tracking import tracker

    save_model = Trainer.save_model

    def failing_save(self, output_dir=None, _internal_call=False):
        if str(output_dir).endswith("model.partial"):
            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, "adapter_model.safetensors"), "wb") as f:
                f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device",
                          os.path.join(output_dir, "adapter_model.safetensors"))
        return save_model(self, output_dir, _internal_call)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(Trainer, "save_model", failing_save)
    monkeypatch.setattr(tracker, "write_text", full)
    out = tmp_path / "out"
    code, _, err = cli(LORA, *TINY, f"training.output_dir={out}",
                       *tracked(mlflow_server, "model-save"))
    assert code == 1
    one_paragraph(err, "model.partial", "no space left on the device", "saving the model")
    assert "cannot write error.txt" in err
    run = the_failed_run(mlflow_server, "model-save")
    assert "saving the model" in run.data.tags["fturun.error"]
    assert not (out / "model").exists() and (out / "model.partial").is_dir()
    assert steps_logged(mlflow_server, run, "loss") == [1, 2, 3, 4] == jsonl_steps(out, "loss")
    assert steps_logged(mlflow_server, run, "eval_loss") == [2, 4]


def test_artifact_upload_refused(cli, mlflow_server, tmp_path, monkeypatch):
    """The server answers but refuses an upload: training and every output are complete, yet
    the MLflow run lacks a file, so it ends FAILED and the exit is 1, naming the file."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    upload = MlflowClient.log_artifact

    def refusing(self, run_id, local_path, artifact_path=None):
        if os.path.basename(local_path) == "eval_results.json":
            raise MlflowException("artifact store refused the file (injected)")
        return upload(self, run_id, local_path, artifact_path)

    monkeypatch.setattr(MlflowClient, "log_artifact", refusing)
    out = tmp_path / "out"
    code, _, err = cli(LORA, *TINY, f"training.output_dir={out}",
                       *tracked(mlflow_server, "upload"))
    assert code == 1
    one_paragraph(err, "eval_results.json", "marked FAILED", str(out))
    run = the_failed_run(mlflow_server, "upload")
    assert (out / "model" / "adapter_model.safetensors").exists()
    assert read_json(out / "eval_results.json")["eval_loss"] > 0
    assert steps_logged(mlflow_server, run, "loss") == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------
# logged once: resume replays, the final evaluation (issue 17, item 1)


def test_resume_after_a_crash_logs_each_step_once(cli, mlflow_server, tmp_path, with_faults):
    """A run dies at step 3 (after logging it) with checkpoint-2 saved; --resume replays step 3.
    The MLflow run and metrics.jsonl then hold each step of each metric once, and the final
    evaluation (of the step-4 weights, evaluated at step 4 already) is not logged again."""
    out = tmp_path / "out"
    args = [LORA, *TINY, f"training.output_dir={out}", *tracked(mlflow_server, "resume")]
    with pytest.raises(RuntimeError):
        cli(*args, 'callbacks=[{"name": "fault", "params": {"step": 3}}]')
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    (run,) = runs_of(mlflow_server, "resume")
    assert run.info.status == "FINISHED"
    for key in ("loss", "learning_rate", "grad_norm"):
        assert steps_logged(mlflow_server, run, key) == [1, 2, 3, 4] == jsonl_steps(out, key)
    for key in ("eval_loss", "eval_accuracy"):
        assert steps_logged(mlflow_server, run, key) == [2, 4] == jsonl_steps(out, key)
    assert steps_logged(mlflow_server, run, "trainable_params") == [0]
    assert jsonl_steps(out, "trainable_params") == [0]
    results = read_json(out / "eval_results.json")
    assert results["eval_loss"] == pytest.approx(run.data.metrics["eval_loss"])


def test_final_evaluation_of_the_best_checkpoint_is_logged_last(cli, mlflow_server, tmp_path):
    """With load_best_model_at_end and the best checkpoint an earlier one, the final evaluation
    evaluates other weights than the last step's: it is logged once, after that step's own
    evaluation, so the run's metrics are the final (best) model's, as in eval_results.json."""
    out = tmp_path / "out"
    code, _, err = cli(LORA, *TINY, "training.load_best_model_at_end=true",
                       "training.metric_for_best_model=loss", "training.learning_rate=0.2",
                       f"training.output_dir={out}", *tracked(mlflow_server, "best"))
    assert code == 0, err
    (run,) = runs_of(mlflow_server, "best")
    state = read_json(out / "trainer_state.json")
    results = read_json(out / "eval_results.json")
    assert run.data.metrics["eval_loss"] == pytest.approx(results["eval_loss"])
    assert state["best_model_checkpoint"].endswith("checkpoint-2")  # lr 0.2: step 4 is worse
    assert steps_logged(mlflow_server, run, "eval_loss") == [2, 4, 4]
    assert results["eval_loss"] < read_json(out / "checkpoint-4" / "trainer_state.json")[
        "log_history"][-1]["eval_loss"]


def test_a_study_run_again_logs_its_trials_and_counts_once(cli, mlflow_server, tmp_path):
    """Search trials are sessions too: a trial's final evaluation is not logged twice. A study
    continued by running the same command again (here with nothing left to run) reattaches its
    parent run, whose counts at the same trial count are not logged a second time."""
    args = [RECIPES / "search_cls.json", "data.max_train_samples=16", "data.max_eval_samples=8",
            "data.max_length=32", "training.max_steps=2", "search.n_trials=1",
            f"search.storage={tmp_path / 'study.log'}", f"training.output_dir={tmp_path / 'out'}",
            *tracked(mlflow_server, "study")]
    for _ in range(2):
        code, _, err = cli(*args)
        assert code == 0, err
    runs = runs_of(mlflow_server, "study")
    (parent,) = [r for r in runs if r.data.tags.get("fturun.search") == "true"]
    (trial,) = [r for r in runs if r is not parent]
    assert steps_logged(mlflow_server, parent, "n_complete") == [1]
    assert steps_logged(mlflow_server, parent, "best_value") == [0, 1]
    assert steps_logged(mlflow_server, trial, "eval_loss") == [2]


def test_metrics_already_in_a_reattached_run_are_not_sent_again(mlflow_server, tmp_path):
    """The tracker's side of resuming, without training: what the run holds up to its last
    step is not sent again; metrics.jsonl is cut back to the checkpoint (atomically) and a row
    cut by a crash is dropped."""
    from mlflow.tracking import MlflowClient

    from fturun.tracking import Tracker

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment(f"faults-replay-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    first = Tracker(client, run_id, experiment, mlflow_server, str(tmp_path))
    for step in range(1, 6):
        first.log_metrics({"loss": 1.0 / step}, step)
    first.flush()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # the kill cut this line
    resumed = Tracker(client, run_id, experiment, mlflow_server, str(tmp_path))
    resumed.continue_from(3)
    assert jsonl_steps(tmp_path, "loss") == [1, 2, 3]
    for step in range(4, 8):
        resumed.log_metrics({"loss": 2.0 / step, "new": 1.0}, step)
    resumed.close("FINISHED")
    history = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
    assert sorted(history) == [1, 2, 3, 4, 5, 6, 7]
    assert history[4] == pytest.approx(0.25)  # the first value kept, not a second one
    assert sorted(m.step for m in client.get_metric_history(run_id, "new")) == [4, 5, 6, 7]
    assert jsonl_steps(tmp_path, "loss") == [1, 2, 3, 4, 5, 6, 7]


def test_values_a_kill_kept_from_the_run_are_sent_on_resume(mlflow_server, tmp_path):
    """Metrics go to MLflow in batches: a kill can beat the next batch (or an outage kept them).
    On resume the rows of metrics.jsonl up to the checkpoint that the run does not hold are
    sent, each step once; the rows after it are dropped (training logs them again)."""
    from mlflow.tracking import MlflowClient

    from fturun.tracking import Tracker

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment(f"faults-catch-up-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    first = Tracker(client, run_id, experiment, mlflow_server, str(tmp_path))
    for step in (1, 2):
        first.log_metrics({"loss": 1.0 / step}, step)
    first.flush()
    with open(tmp_path / "metrics.jsonl", "a") as f:  # appended, then killed before the send
        for step in (3, 4, 5):
            f.write(json.dumps({"step": step, "loss": 1.0 / step, "eval_loss": 2.0}) + "\n")
    resumed = Tracker(client, run_id, experiment, mlflow_server, str(tmp_path))
    resumed.continue_from(4)
    resumed.log_metrics({"loss": 0.1}, 5)
    resumed.close("FINISHED")
    history = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
    assert history == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3, 4: 0.25, 5: 0.1})
    assert sorted(m.step for m in client.get_metric_history(run_id, "eval_loss")) == [3, 4]
    assert jsonl_steps(tmp_path, "loss") == [1, 2, 3, 4, 5]


def test_metrics_logged_within_the_send_interval_go_in_one_request(mlflow_server, tmp_path):
    """One request per interval, not one per logged step (each costs the training loop CPU on
    a small machine); flush sends at once, and every value arrives."""
    from mlflow.tracking import MlflowClient

    from fturun.tracking import Tracker

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment(f"faults-interval-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    tracker = Tracker(client, run_id, experiment, mlflow_server, str(tmp_path))
    requests = []
    send = client.log_batch
    tracker.client.log_batch = lambda *a, **k: requests.append(len(k["metrics"])) or send(*a, **k)
    start = time.monotonic()
    for step in range(1, 31):
        tracker.log_metrics({"loss": 1.0 / step, "learning_rate": 1e-4}, step)
    assert tracker.flush()
    assert time.monotonic() - start < 4.0  # flush did not wait for the interval
    assert requests == [60]
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 31))


# ------------------------------------------------------------------------------------------
# data sources that hold nothing (issue 17, item 9 and its siblings)


@pytest.fixture(scope="module")
def source(registry, tmp_path_factory):
    """``source(name, {file: text}, path)``: write the files into a new folder and load a
    dataset component's rows from ``path`` there, the way a run does (:func:`load_source`)."""
    from fturun.data.sources import load_source
    from fturun.plugin.context import BuildContext

    root = tmp_path_factory.mktemp("sources")

    def load(name, files, path, **params):
        folder = root / f"case{len(list(root.iterdir()))}"
        folder.mkdir()
        for relative, text in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text)
        context = BuildContext(recipe={}, recipe_dir=str(folder))
        return load_source({"name": name, "params": {"path": str(folder / path), **params}},
                           "train", registry, context)

    return load


@pytest.mark.parametrize("files,path,expected", [
    ({"train.csv": ""}, "train.csv", "train.csv' is empty (0 bytes)"),
    ({"train.json": ""}, "train.json", "train.json' is empty (0 bytes)"),
    ({"train.jsonl": ""}, "train.jsonl", "train.jsonl' is empty (0 bytes)"),
    ({"a.csv": "", "b.csv": ""}, "*.csv", "2 files"),
    ({"train.csv": "text,label\n"}, "train.csv", "hold no rows (a csv header alone?"),
    ({"train.json": "[]"}, "train.json", "hold no rows"),
    ({"train.jsonl": "\n\n"}, "train.jsonl", "hold no rows"),
    ({"data/x.csv": "text,label\nhi,a\n"}, "data", "is a folder: name its files"),
    ({"data/.keep/x": ""}, "data", "is a folder with no files in it"),
    ({"x.csv": "text,label\nhi,a\n"}, "*.tsv", "no files match"),
])
def test_sources_that_hold_nothing_say_so(source, files, path, expected):
    from fturun.core.errors import RecipeRuntimeError

    with pytest.raises(RecipeRuntimeError) as caught:
        source("files", files, path)
    assert expected in str(caught.value)


def test_an_empty_file_among_others_is_skipped_with_a_warning(source, capsys):
    ds = source("files", {"a.csv": "text,label\nhi,x\nyo,y\n", "b.csv": ""}, "*.csv")
    assert len(ds) == 2
    assert "skipping 1 empty (0-byte) data file(s)" in capsys.readouterr().err


def test_a_conll_file_without_sentences(source):
    from fturun.core.errors import RecipeRuntimeError

    with pytest.raises(RecipeRuntimeError, match="hold no rows"):
        source("conll", {"train.conll": "-DOCSTART- O\n\n"}, "train.conll")


# ------------------------------------------------------------------------------------------
# the environment read while another thread changes it (issue 17, item 11)


@contextmanager
def churning_environment():
    """Another thread setting and removing variables all the time (as MLflow's telemetry
    thread does with _MLFLOW_TELEMETRY_SESSION_ID)."""
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set():
            os.environ[f"FTURUN_TEST_CHURN_{i % 40}"] = "value"
            os.environ.pop(f"FTURUN_TEST_CHURN_{(i + 20) % 40}", None)
            i += 1

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for i in range(40):
            os.environ.pop(f"FTURUN_TEST_CHURN_{i}", None)


def test_environment_scans_survive_a_thread_changing_it():
    """Iterating os.environ while another thread removes a variable raised KeyError in about
    3% of the calls (measured: 126 of 3,933 in 3 s); every scan now reads a snapshot."""
    from fturun.core.redaction import redact_text, secret_values
    from fturun.engine.hardware import Hardware

    calls = 0
    with churning_environment():
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            secret_values()
            redact_text("nothing secret here")
            Hardware()
            calls += 1
    assert calls > 500
