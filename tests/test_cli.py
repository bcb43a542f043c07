"""The other commands: schema, plugins, components, help; and the committed schemas are fresh."""

import json

from conftest import ROOT, run_fturun
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
    stale (run `python -m fturun.generate_schemas` and commit the result)."""
    from fturun.generate_schemas import generated_files

    for path, text in generated_files().items():
        assert path.read_text() == text, f"{path} is stale: python -m fturun.generate_schemas"


def test_plugins_command_lists_builtins_as_json(cli):
    code, out, _ = cli("plugins")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)}
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
    training = json.loads((ROOT / "fturun" / "training_arguments.schema.json").read_text())
    code, out, _ = cli("components", "optimizer", "--json")
    names = {c["name"] for c in json.loads(out)["optimizer"]}
    assert set(training["properties"]["optim"]["enum"]) <= names
    assert {"adafactor", "adamw_bnb_8bit", "torch_sgd"} <= names
    code, out, _ = cli("components", "scheduler", "--json")
    names = {c["name"] for c in json.loads(out)["scheduler"]}
    assert set(training["properties"]["lr_scheduler_type"]["enum"]) == names


def test_help_teaches():
    result = run_fturun("--help")
    assert result.returncode == 0
    for text in ("validate", "components", "KEY=VALUE", "fturun recipes/lora_cls.json"):
        assert text in result.stdout
    result = run_fturun()
    assert result.returncode == 2
