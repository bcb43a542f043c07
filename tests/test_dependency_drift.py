"""A dependency release must not break fturun: the committed argument schemas are the locked
versions' (``constraints.txt``), and validation follows the installed library (a schema
generated from it, cached per version) when another version is installed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing

import pytest
from helpers import ROOT, locked_versions

TRL_SCHEMA = ROOT / "plugins" / "fturun-trl" / "src" / "fturun_trl" / "dpo_settings.schema.json"


def test_committed_schemas_were_generated_from_the_locked_versions():
    locked = locked_versions()
    for path in (ROOT / "fturun" / "schema" / "training_arguments.schema.json", TRL_SCHEMA):
        made_from = json.loads(path.read_text())["x-generated-from"]
        assert made_from, path
        assert {p: locked[p] for p in made_from} == made_from, (
            f"{path.name} was generated from {made_from}, constraints.txt locks "
            f"{ {p: locked.get(p) for p in made_from} }: regenerate it from the locked versions")


def test_ci_and_the_readme_install_the_locked_versions():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "-c constraints.txt -e '.[test,docs]'" in ci  # the tests and the docs build
    assert "-c constraints.txt -e '.[test]'" in readme
    assert "constraints" not in (ROOT / "pyproject.toml").read_text().split("[project.optional")[0]


def test_the_lock_pins_torch_without_a_local_label():
    locked = locked_versions()
    assert locked["torch"] == "2.13.0"  # matches the CPU (+cpu) and the CUDA build alike
    assert "fturun" not in locked and "fturun-trl" not in locked


@pytest.fixture
def fake_transformers(monkeypatch, tmp_path):
    """An installed transformers "5.99.0" whose TrainingArguments gained ``new_knob`` and lost
    ``logging_steps``; fturun's cache in ``tmp_path``."""
    from transformers import TrainingArguments

    from fturun.schema import compose, installed
    from fturun.schema import generate as generate_schemas

    hints = typing.get_type_hints(TrainingArguments)
    fields = []
    for f in dataclasses.fields(TrainingArguments):
        if not f.init or f.name == "logging_steps":
            continue
        default = (dataclasses.field(default=f.default, metadata=f.metadata)
                   if f.default is not dataclasses.MISSING else
                   dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
                   if f.default_factory is not dataclasses.MISSING else
                   dataclasses.field(metadata=f.metadata))
        fields.append((f.name, hints[f.name], default))
    fields.append(("new_knob", int, dataclasses.field(default=3, metadata={"help": "new"})))
    newer = dataclasses.make_dataclass("TrainingArguments", fields)
    monkeypatch.setattr(generate_schemas, "training_arguments_class", lambda: newer)
    real_version = installed.metadata.version
    monkeypatch.setattr(installed.metadata, "version",
                        lambda name: "5.99.0" if name == "transformers" else real_version(name))
    monkeypatch.setenv("FTURUN_CACHE_DIR", str(tmp_path / "cache"))
    installed.forget_loaded()
    compose.training_schema.cache_clear()
    yield tmp_path / "cache"
    installed.forget_loaded()
    compose.training_schema.cache_clear()


def test_a_newer_transformers_is_validated_against_its_own_arguments(fake_transformers, registry,
                                                                     tmp_path):
    from fturun.recipe.load import load_recipe
    from fturun.schema import compose_schema, validate_recipe
    from fturun.schema.installed import schema_sources

    recipe_file = tmp_path / "r.json"
    recipe = json.loads((ROOT / "recipes" / "lora_cls.json").read_text())
    recipe["training"] = {"new_knob": 5, "logging_steps": 10, "learning_rate": 0.001}
    recipe_file.write_text(json.dumps(recipe, indent=1))
    schema = compose_schema(registry)
    problems = validate_recipe(load_recipe(str(recipe_file)), registry, schema)
    text = [str(p) for p in problems]
    assert len(text) == 1, text
    assert "$.training.logging_steps" in text[0] and "unknown key 'logging_steps'" in text[0]
    line = recipe_file.read_text().splitlines().index('  "logging_steps": 10,') + 1
    assert f"(line {line}," in text[0]
    cached = list((fake_transformers / "schemas").glob("training-*transformers5.99.0*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["x-generated-from"]["transformers"] == "5.99.0"
    source = schema_sources()["training"]
    assert source["source"] == "generated"
    assert source["installed"]["transformers"] == "5.99.0"
    assert source["generated_from"]["transformers"] == "5.99.0"


@pytest.mark.subprocess  # starts its own process
def test_a_cached_schema_is_read_without_importing_transformers(fake_transformers):
    from fturun.schema import compose

    compose.training_schema()  # generates and caches it (imports transformers here)
    probe = """
import importlib.metadata as m, json, sys
real = m.version
m.version = lambda name: "5.99.0" if name == "transformers" else real(name)
from fturun.schema import training_schema
from fturun.schema.installed import schema_sources
props = training_schema()["properties"]
print(json.dumps({"new_knob": "new_knob" in props, "logging_steps": "logging_steps" in props,
                   "source": schema_sources()["training"]["source"],
                   "imported": sorted(n for n in ("transformers", "torch", "accelerate")
                                      if n in sys.modules)}))
"""
    env = {"FTURUN_CACHE_DIR": str(fake_transformers), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True).stdout
    assert json.loads(out) == {"new_knob": True, "logging_steps": False, "source": "cache",
                               "imported": []}


def test_the_locked_transformers_uses_the_committed_schema(tmp_path, monkeypatch):
    from fturun.schema import compose, installed

    monkeypatch.setenv("FTURUN_CACHE_DIR", str(tmp_path))
    installed.forget_loaded()
    compose.training_schema.cache_clear()
    try:
        compose.training_schema()
        source = installed.schema_sources()["training"]
    finally:
        installed.forget_loaded()
        compose.training_schema.cache_clear()
    if source["installed"] != source["generated_from"]:
        pytest.skip(f"installed {source['installed']} is not the locked version")
    assert source["source"] == "committed"
    assert not (tmp_path / "schemas").exists()


def test_plugins_and_the_environment_name_each_schemas_versions(cli):
    from fturun.tracking.params import environment

    code, out, _ = cli("plugins")
    assert code == 0
    schemas = json.loads(out)["schemas"]
    assert set(schemas["training"]["installed"]) == {"transformers", "accelerate"}
    assert schemas["training"]["generated_from"]["transformers"]
    assert schemas["training"]["source"] in ("committed", "cache", "generated")
    assert environment()["schemas"]["training"] == schemas["training"]


@pytest.mark.subprocess  # starts its own process
def test_the_lock_script_refuses_a_folder_that_is_no_virtualenv(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "dev" / "lock.py"), "--venv",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "is not a virtualenv" in result.stderr and "Traceback" not in result.stderr
