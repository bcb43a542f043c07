"""`fturun validate`: every recipe in recipes/ and tests/cases/valid is valid; every case in
tests/cases/invalid and every bad input named in the foundation issue exits 2 with a located,
actionable message and no traceback."""

import json
import sys

import pytest
from helpers import CASES, RECIPES

VALID = sorted(RECIPES.glob("*.json")) + sorted((CASES / "valid").glob("*.json"))
EXPECTED = json.loads((CASES / "invalid" / "expected.json").read_text())


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_recipes(cli, path):
    code, out, err = cli("validate", path)
    assert code == 0, err
    assert f"{path}: valid" in out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_cases(cli, name):
    path = CASES / "invalid" / name
    code, out, err = cli("validate", path)
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith(f"{path}::$"), first
    for fragment in EXPECTED[name]:
        assert fragment in err, (fragment, err)
    assert "(line " in err  # every schema problem points into the file


def test_every_problem_reported_at_once_with_line_and_column(cli, tmp_path):
    path = tmp_path / "many.json"
    path.write_text('{\n  "data": {"train": "nope"},\n  "model": {"name": "pretrained",'
                    ' "params": {"path": 3}},\n  "training": {"per_device_train_batch_size": 0,'
                    ' "bogus": true}\n}\n')
    code, _, err = cli("validate", path)
    assert code == 2
    lines = [line for line in err.splitlines() if "::$" in line]
    assert len(lines) == 4, err
    assert f"{path}::$.data.train (line 2, col 21): 'nope' is not a registered dataset" in err
    assert f"{path}::$.model.params.path (line 3, col 54): expected string, got integer 3" in err
    assert f"{path}::$.training.per_device_train_batch_size (line 4, col 47)" in err
    assert f"{path}::$.training.bogus (line 4, col 50): unknown key 'bogus'" in err
    assert "4 problems" in err


def _write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    with open(path, mode) as f:
        f.write(text)
    return path


BAD_FILES = {
    "empty": ("", "file is empty"),
    "not_json": ("model: bert\n", ":1:1: invalid JSON: Expecting value"),
    "trailing_comma": ('{\n  "model": "x",\n}\n', ":3:1: invalid JSON: trailing comma before '}'"),
    "array_top_level": ("[1, 2]", "must be a JSON object ({...}), not a JSON array"),
    "number_top_level": ("42", "must be a JSON object ({...}), not a JSON int"),
    "deeply_nested": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "nested_65": ('{"description": ' + "[" * 70 + "]" * 70 + "}", "nested too deeply"),
    "nan": ('{"seed": NaN}', "nan.json::$.seed (line 1, col 10): NaN is not valid JSON"),
    "single_quotes": ("{'model': 'x'}", "double quotes"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files(cli, tmp_path, case):
    text, message = BAD_FILES[case]
    path = _write(tmp_path, f"{case}.json", text)
    code, _, err = cli("validate", path)
    assert code == 2
    assert message in err, err
    assert str(path) in err


def test_missing_file_and_directory(cli, tmp_path):
    code, _, err = cli("validate", tmp_path / "nope.json", tmp_path)
    assert code == 2
    assert "nope.json: no such file" in err
    assert "is a directory, not a recipe file" in err


def test_huge_file(cli, tmp_path):
    path = tmp_path / "huge.json"
    path.write_text('{"description": "' + "x" * (6 * 1024 * 1024) + '"}')
    code, _, err = cli("validate", path)
    assert code == 2
    assert "a recipe may be at most 5 MiB" in err


def test_not_utf8(cli, tmp_path):
    path = _write(tmp_path, "latin.json", '{"description": "caf\xe9"}'.encode("latin-1"), "wb")
    code, _, err = cli("validate", path)
    assert code == 2 and "not UTF-8" in err


def test_extends_merges_and_locates_errors_in_the_base(cli, tmp_path):
    base = _write(tmp_path, "base.json", json.dumps({
        "data": {"train": {"name": "files", "params": {"path": "t.csv"}}},
        "model": {"name": "pretrained", "params": {"path": "m"}},
        "training": {"learning_rate": 0.1, "num_train_epochs": "x"}}, indent=1))
    child = _write(tmp_path, "child.json", json.dumps({"extends": "base.json",
                                                       "training": {"learning_rate": 0.2}}))
    code, _, err = cli("validate", child)
    assert code == 2
    assert f"{base}::$.training.num_train_epochs (line " in err
    from fturun.recipe.load import load_recipe

    merged = load_recipe(str(_write(tmp_path, "ok.json", json.dumps(
        {"extends": "base.json", "training": {"num_train_epochs": 2}})))).data
    assert merged["training"] == {"learning_rate": 0.1, "num_train_epochs": 2}
    assert "extends" not in merged


def test_extends_cycle_and_missing_base(cli, tmp_path):
    _write(tmp_path, "a.json", '{"extends": "b.json"}')
    _write(tmp_path, "b.json", '{"extends": "a.json"}')
    code, _, err = cli("validate", tmp_path / "a.json")
    a, b = (str((tmp_path / n).resolve()) for n in ("a.json", "b.json"))
    # located at the 'extends' that closes the cycle
    assert code == 2
    assert (f"{tmp_path / 'b.json'}::$.extends (line 1, col 13): 'extends' cycle: {a} -> {b} -> "
            f"{a}; remove one of the 'extends' keys") in err
    _write(tmp_path, "c.json", '{\n  "extends": "gone.json"\n}')
    code, _, err = cli("validate", tmp_path / "c.json")
    assert code == 2
    assert "$.extends (line 2, col 14): base recipe 'gone.json' not found" in err


def test_overrides(cli):
    recipe = RECIPES / "lora_cls.json"
    code, _, err = cli("validate", recipe, "--set", "training.learning_rate=3e-5",
                       "--set", "adapter.params.r=4", "--set", 'metrics=["accuracy"]')
    assert code == 0, err
    code, _, err = cli("validate", recipe, "--set", "training.learnin_rate=3")
    assert code == 2
    assert ("override 'training.learnin_rate=3'::$.training.learnin_rate: unknown key "
            "'learnin_rate' (did you mean 'learning_rate'?)") in err
    code, _, err = cli("validate", recipe, "--set", "training.per_device_eval_batch_size=abc")
    assert code == 2 and "expected integer, got string \"abc\"" in err
    # the train batch size also takes "auto": another word is refused, saying what it takes
    code, _, err = cli("validate", recipe, "--set", "training.per_device_train_batch_size=abc")
    assert code == 2 and ('$.training.per_device_train_batch_size: "abc" is not valid; write a '
                          "whole number of 1 or more, or \"auto\"") in err
    for bad, message in [("novalue", "an override is KEY=VALUE"),
                         ("a..b=1", "empty segment"),
                         ("metrics.7=1", "index 7 is out of range"),
                         ("metrics.x=1", "use an index"),
                         ("seed.x=1", "is the int 42, not an object")]:
        code, _, err = cli("validate", recipe, "--set", bad)
        assert code == 2, bad
        assert message in err, (bad, err)


def test_override_expands_a_bare_component_name():
    from fturun.recipe.load import load_recipe

    recipe = load_recipe(str(RECIPES / "lora_cls.json"), ["collator.params.pad_to_multiple_of=8",
                                                          "metrics.0.params.x=1"])
    assert recipe.data["collator"] == {"name": "padding", "params": {"pad_to_multiple_of": 8}}
    assert recipe.data["metrics"][0] == {"name": "accuracy", "params": {"x": 1}}


def test_no_traceback_and_exit_2_as_a_real_process(run_fturun, tmp_path):
    path = _write(tmp_path, "bad.json", '{"model": 1,}')
    result = run_fturun("validate", path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    result = run_fturun(path, "training.learning_rate=")  # run with a bad recipe: also exit 2
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = run_fturun("--bogus-flag")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.subprocess  # starts its own process
def test_validate_imports_no_heavy_library():
    code = ("import sys; from fturun.cli import main; rc = main(['validate', "
            f"{str(RECIPES / 'lora_cls.json')!r}]); "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'mlflow', 'datasets') "
            "if m in sys.modules]; print(heavy); sys.exit(rc)")
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[]"), result.stdout
