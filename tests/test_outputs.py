"""Outputs are never silently destroyed, and one output folder holds one run: the folder lock
(two real processes), a lock left by a killed process, the shared lock of one search study's
workers; resumes that would train nothing or continue another run's settings; reruns in a folder
of their own; the graceful stop outside training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import RECIPES, ROOT

from fturun.run.checkpoints import COMPLETE_MARKER, nothing_to_train, resume_changes
from fturun.run.lock import EXIT_LOCKED, LOCK_FILE, FolderLock, FolderLocked, folder_holder

LORA = RECIPES / "lora_cls.json"
TINY = ["data.max_train_samples=32", "data.max_eval_samples=16", "data.max_length=32",
        "training.logging_steps=1", "tracking.enabled=false"]
NO_EVAL = ["training.eval_strategy=no", "training.load_best_model_at_end=false"]


def _env(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}


def _wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# the folder lock


def test_a_second_run_into_a_busy_folder_is_refused_and_a_dead_holders_lock_taken_over(
        run_fturun, start_fturun, tmp_path):
    out = tmp_path / "out"
    first = start_fturun(LORA, *TINY, *NO_EVAL, "training.max_steps=500",
                         "training.save_strategy=no", f"training.output_dir={out}")
    try:
        _wait_for(out / LOCK_FILE, first)
        started = time.monotonic()
        second = run_fturun(LORA, *TINY, "training.max_steps=2", f"training.output_dir={out}")
        assert second.returncode == EXIT_LOCKED, second.stderr[-2000:]
        assert time.monotonic() - started < 60
        assert f"{out} is in use by a run: pid {first.pid} on " in second.stderr
        assert "started " in second.stderr and "training.max_steps=500" in second.stderr
        assert "another training.output_dir" in second.stderr
        assert "Traceback" not in second.stderr
        assert "data:" not in second.stdout  # refused before anything was loaded
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)  # it leaves its lock file behind
        first.communicate(timeout=60)
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == first.pid
    # the kernel dropped the flock with the killed process: the next run takes the lock over
    # (and here stops at once: there is no checkpoint to resume)
    third = run_fturun(LORA, *TINY, f"training.output_dir={out}", "--resume")
    assert f"warning: {out} was locked by a run: pid {first.pid}" in third.stderr
    assert "that process is gone, taking the lock over" in third.stderr
    assert third.returncode == 1 and "no checkpoint-N folder" in third.stderr
    assert not (out / LOCK_FILE).exists()  # released when the run ended


def test_one_study_shares_its_folder_and_every_other_run_is_refused(tmp_path):
    first = FolderLock(str(tmp_path), study="bbc in sqlite:///s.db").acquire()
    second = FolderLock(str(tmp_path), study="bbc in sqlite:///s.db").acquire()  # a worker
    with pytest.raises(FolderLocked, match=r"in use by a worker of search study 'bbc in "
                                           rf"sqlite:///s.db': pid {os.getpid()} "):
        FolderLock(str(tmp_path)).acquire()
    with pytest.raises(FolderLocked, match="in use by a worker of search study 'bbc in"):
        FolderLock(str(tmp_path), study="other in sqlite:///s.db").acquire()
    assert folder_holder(str(tmp_path)).study == "bbc in sqlite:///s.db"
    first.release()
    assert (tmp_path / LOCK_FILE).exists()  # the other worker still holds it
    second.release()
    assert not (tmp_path / LOCK_FILE).exists() and folder_holder(str(tmp_path)) is None
    with FolderLock(str(tmp_path)):  # free again: a plain run takes it
        with pytest.raises(FolderLocked, match="in use by a run"):
            FolderLock(str(tmp_path), study="bbc in sqlite:///s.db").acquire()


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path):
    from fturun.core.errors import FturunError

    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(FturunError) as raised:
        FolderLock(str(blocker / "out")).acquire()
    assert str(blocker / "out") in str(raised.value) or str(blocker) in str(raised.value)
    assert "training.output_dir" in str(raised.value)
    assert not isinstance(raised.value, FolderLocked)


# --------------------------------------------------------------------------------------------
# resume: nothing to train, or another run's settings


def _state(folder, **state):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps(state))
    return str(folder)


def test_what_a_resume_of_a_finished_run_says(tmp_path):
    end = _state(tmp_path / "checkpoint-5", global_step=5, max_steps=5, epoch=2.5)
    (tmp_path / "model").mkdir()
    message = nothing_to_train(end, str(tmp_path), {"max_steps": 5})
    assert message.startswith("the run finished at step 5; nothing to resume")
    assert "raise training.max_steps" in message
    assert nothing_to_train(end, str(tmp_path), {"max_steps": 8}) is None  # more steps
    assert nothing_to_train(end, str(tmp_path), {"num_train_epochs": 3}) is None  # more epochs
    assert "finished at step 5" in nothing_to_train(end, str(tmp_path), {"num_train_epochs": 2})
    # a checkpoint before the end: a resume trains the rest ...
    middle = _state(tmp_path / "checkpoint-2", global_step=2, max_steps=5, epoch=1.0)
    assert nothing_to_train(middle, str(tmp_path), {"max_steps": 5}) is None
    assert "is at step 2 and training.max_steps is 2: nothing to train" in \
        nothing_to_train(middle, str(tmp_path), {"max_steps": 2})
    # ... unless the run went on to its end after it (save_strategy "best")
    _state(tmp_path, global_step=5, max_steps=5, epoch=2.5)
    assert "finished at step 5" in nothing_to_train(middle, str(tmp_path), {"max_steps": 5})
    (tmp_path / "model").rmdir()
    assert f"the trained weights are in {middle}" in \
        nothing_to_train(middle, str(tmp_path), {"max_steps": 5})


def test_resume_changes_name_each_changed_setting(tmp_path):
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    assert resume_changes(str(checkpoint), {"seed": 1}) == []  # no marker: nothing recorded
    (checkpoint / COMPLETE_MARKER).write_text(json.dumps(
        {"global_step": 4, "run": {"data.max_length": 32, "seed": 42,
                                   "tracking.tracking_uri": "http://a:5000"}}))
    assert resume_changes(str(checkpoint), {"data.max_length": 64, "seed": 42,
                                            "data.labels.0": "x"}) == [
        'data.labels.0: "(not set)" -> "x"', "data.max_length: 32 -> 64",
        'tracking.tracking_uri: "http://a:5000" -> "(not set)"']


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run (4 steps, checkpoints at 2 and 4, a model)."""
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    out = tmp_path_factory.mktemp("finished") / "out"
    plugins._DEFAULT = None
    code = main([str(a) for a in (LORA, *TINY, "training.max_steps=4",
                                  "training.eval_strategy=steps", "training.eval_steps=2",
                                  "training.save_strategy=steps", "training.save_steps=2",
                                  f"training.output_dir={out}")])  # in-process: a plain run
    assert code == 0
    return out


def _snapshot(out):
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")}


def test_resume_of_a_finished_run_does_nothing(finished_run, cli):
    before = _snapshot(finished_run)
    code, out, err = cli(LORA, *TINY, "training.max_steps=4",
                         f"training.output_dir={finished_run}", "--resume")
    assert code == 0, err
    assert "the run finished at step 4; nothing to resume" in out
    assert _snapshot(finished_run) == before  # no step 5, model/ untouched


def test_resume_with_other_data_or_tracking_is_refused(finished_run, cli, tmp_path):
    before = _snapshot(finished_run)
    code, out, err = cli(LORA, *TINY, "training.max_steps=6", "data.max_train_samples=48",
                         f"training.output_dir={finished_run}", "--resume")
    assert code == 2
    assert "this recipe's settings differ from those of the run that saved the checkpoint: " \
           "data.max_train_samples: 32 -> 48" in err
    code, out, err = cli(LORA, *TINY, "training.max_steps=6", "tracking.enabled=true",
                         f"tracking.tracking_uri=sqlite:///{tmp_path / 'other.db'}",
                         f"training.output_dir={finished_run}", "--resume")
    assert code == 2
    assert "tracking.enabled: false -> true" in err and "tracking.tracking_uri" in err
    assert "Traceback" not in err and "data:" not in out
    assert _snapshot(finished_run) == before
    assert not (tmp_path / "other.db").exists()  # no MLflow run was started


# --------------------------------------------------------------------------------------------
# a fresh run into a folder with another run's outputs


def test_a_fresh_run_never_replaces_a_finished_model_unasked(finished_run, cli, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    weights = out / "model" / "adapter_model.safetensors"
    old = weights.read_bytes()
    (out / "model" / "old.txt").write_text("the earlier run's model")
    code, stdout, err = cli(LORA, *TINY, "training.max_steps=2", f"training.output_dir={out}")
    assert code == 2
    assert f"{out} holds the finished model of an earlier run (model, checkpoint-2, " \
           "checkpoint-4)" in err
    assert "--resume" in err and "another training.output_dir" in err and "--overwrite" in err
    assert "data:" not in stdout and (out / "checkpoint-4").is_dir()
    # replacing it: the old model stays until the new one is saved, here never (the run fails)
    code, stdout, err = cli(LORA, *TINY, "training.max_steps=2", "--overwrite",
                            'adapter.params.target_modules=["qkv"]',
                            f"training.output_dir={out}")
    assert code == 1 and "match no module of the model" in err
    assert "replacing the run in" in stdout and "its model/ stays until" in stdout
    assert weights.read_bytes() == old and (out / "model" / "old.txt").exists()
    assert not (out / "checkpoint-4").exists()
    # the recipe's output.overwrite says the same as --overwrite
    code, stdout, err = cli(LORA, *TINY, "training.max_steps=2", "output.overwrite=true",
                            *NO_EVAL, "training.save_strategy=no",
                            f"training.output_dir={out}")
    assert code == 0, err
    assert weights.is_file() and not (out / "model" / "old.txt").exists()  # the new model
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


def test_a_new_in_memory_study_never_replaces_an_earlier_studys_trials(cli, tmp_path):
    (tmp_path / "trial-0").mkdir()
    code, _, err = cli("search", RECIPES / "search_cls.json", f"training.output_dir={tmp_path}",
                       "tracking.enabled=false")
    assert code == 2
    assert f"{tmp_path} holds the trials of an earlier search (trial-0)" in err
    assert "--overwrite" in err and "search.storage" in err
    assert (tmp_path / "trial-0").is_dir()


# --------------------------------------------------------------------------------------------
# a rerun trains into a folder of its own


def test_a_rerun_trains_into_a_folder_of_its_own(mlflow_server, cli, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "original"
    code, _, err = cli(LORA, *TINY, *NO_EVAL, "training.max_steps=2",
                       "training.save_strategy=steps", "training.save_steps=2",
                       "tracking.enabled=true", "tracking.log_model=false",
                       f"tracking.tracking_uri={mlflow_server}",
                       "tracking.experiment=test-rerun-folder", f"training.output_dir={out}")
    assert code == 0, err
    before = _snapshot(out)
    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("test-rerun-folder").experiment_id])
    run_id = run.info.run_id
    code, stdout, err = cli("rerun", run_id, "--tracking-uri", mlflow_server,
                            "training.max_steps=1")
    assert code == 0, err
    rerun_dir = f"{out}-rerun-{run_id[:8]}"
    assert f"rerun of {run_id}: training into {rerun_dir}" in stdout
    assert os.path.isdir(os.path.join(rerun_dir, "model"))
    assert _snapshot(out) == before  # the original's checkpoints and model are untouched


def test_rerun_folders_never_collide(tmp_path):
    from fturun.recipe.load import Recipe
    from fturun.tracking.queries import prepare_rerun

    def rerun(data, overrides=()):
        recipe = Recipe(data=data, path=str(tmp_path / "lora_cls.json"),
                        overrides=list(overrides))
        return prepare_rerun(recipe, "0123456789abcdef", "http://mlflow", None), recipe

    base = str(tmp_path / "out")
    folder, recipe = rerun({"training": {"output_dir": base}})
    assert folder == f"{base}-rerun-01234567" == recipe.data["training"]["output_dir"]
    os.makedirs(folder)
    assert rerun({"training": {"output_dir": base}})[0] == f"{base}-rerun-01234567-2"
    assert rerun({})[0] == os.path.join("outputs", "lora_cls") + "-rerun-01234567"
    mine = str(tmp_path / "mine")
    assert rerun({"training": {"output_dir": mine}}, [f"training.output_dir={mine}"])[0] == mine


# --------------------------------------------------------------------------------------------
# the graceful stop outside training


STOP_SCRIPT = """
import os, signal, sys, time
from fturun.core.errors import Interrupted
from fturun.run.stop import GracefulStop
stop = GracefulStop()
stop.training = sys.argv[1] == "training"
try:
    with stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(3)
    print("went on, stop requested:", stop.requested is not None)
except Interrupted as exc:
    print("raised:", exc, exc.exit_code)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("rank,phase,expected_code,expected_out,expected_err", [
    ("0", "loading", 0, "raised: stopped by SIGTERM: training had not started, nothing was "
                        "saved; run the command again 143", ""),
    ("1", "loading", 143, "", ""),  # another rank: silent, rank 0 reports
    ("0", "training", 0, "went on, stop requested: True",
     "interrupt: saving a checkpoint at the end of this step"),
])
def test_a_signal_outside_training_stops_at_once_and_says_why(rank, phase, expected_code,
                                                              expected_out, expected_err):
    result = subprocess.run([sys.executable, "-c", STOP_SCRIPT, phase], capture_output=True,
                            text=True, env=_env(RANK=rank), cwd=ROOT, timeout=60)
    assert result.returncode == expected_code, result.stderr
    assert result.stdout.strip() == expected_out
    assert expected_err in result.stderr
    if phase != "training":
        assert "saving a checkpoint" not in result.stderr
