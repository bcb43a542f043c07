"""Plugin API 1.0: the versioned contract, the contract made true (defaults, closed schemas, the
loss under accumulation and two processes, optimizer and scheduler returns, what ran in MLflow),
messages for components of disabled or failed plugins, the testing helpers, meta-tests on the
documentation, and tests/plugin_packages/author_plugin (written from the docs and hookspecs.py
alone) under `fturun RECIPE`, `fturun check`, gradient accumulation and `fturun launch`."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from fturun import hookimpl, hookspecs, testing
from fturun.api import API_VERSION, RecipeRuntimeError
from fturun.plugin.manager import load_plugins
from fturun.plugin.registry import KINDS, PLURALS

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("fturun_register_"))


def regression_recipe(**changes) -> dict:
    """A text-regression recipe naming a component of every kind of the author plugin."""
    rows = [{"text": f"review {i}: {'great' if i % 2 else 'poor'} value, {w} service",
             "label": float(i % 4)}
            for i, w in enumerate(["quick", "slow", "kind", "rude", "fine", "odd", "warm",
                                   "cold"])]
    recipe = {
        "task": "text-regression",
        "data": {"train": {"name": "inline_rows", "params": {"rows": rows}},
                 "eval": {"name": "inline_rows", "params": {"rows": rows[:4]}},
                 "test": {"name": "inline_rows", "params": {"rows": rows[4:6]}},
                 "max_length": 16, "padding": "max_length"},
        "model": "tiny_bert",
        "adapter": "freeze_embeddings",
        "collator": "pad_batch",
        "loss": "mse",
        "metrics": ["mae"],
        "callbacks": [{"name": "step_logger", "params": {"every": 1}}],
        "optimizer": {"name": "plain_sgd", "params": {"lr": 0.05}},
        "scheduler": "halving",
        "training": {"per_device_train_batch_size": 8, "max_steps": 2, "logging_steps": 1,
                     "eval_strategy": "no", "save_strategy": "no", "report_to": "none"},
        "tracking": {"enabled": False},
    }
    for key, value in changes.items():
        recipe[key] = value
    return recipe


def write_recipe(folder: Path, recipe: dict, name: str = "recipe.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(recipe, indent=2))
    return path


# --------------------------------------------------------------------------------------------
# the API version, and the range a plugin declares


def test_plugins_output_shows_the_api_version_and_each_declared_range(cli, author_site,
                                                                      monkeypatch):
    monkeypatch.syspath_prepend(str(author_site))
    code, out, _ = cli("plugins")
    assert code == 0
    report = json.loads(out)
    assert report["api_version"] == API_VERSION == "1.4"
    from fturun import __version__

    assert report["fturun"] == __version__
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["author"]["api"] == ">=1.0,<2" and plugins["author"]["status"] == "ok"
    assert plugins["builtin.losses"]["api"] is None  # declares nothing: any fturun


class NeedsApi2:
    FTURUN_API = ">=2.0,<3"

    @hookimpl
    def fturun_register_losses(self, register):
        register("future_loss", lambda p, c: None, None, "needs API 2")


class NeedsApi1:
    FTURUN_API = "~=1.0"

    @hookimpl
    def fturun_register_losses(self, register):
        register("present_loss", lambda p, c: None, None, "works with 1.x")


class BadRange:
    FTURUN_API = "one point oh"

    @hookimpl
    def fturun_register_losses(self, register):
        register("odd_loss", lambda p, c: None, None, "bad range")


def test_a_plugin_outside_its_declared_api_range_is_refused_saying_why(tmp_path):
    loaded = load_plugins(extra_plugins={"future": NeedsApi2(), "present": NeedsApi1(),
                                         "odd": BadRange()}, entry_points=False)
    by_name = {p.name: p for p in loaded.plugins}
    future = by_name["future"]
    assert future.status == "failed" and future.api == ">=2.0,<3"
    from fturun.plugin.version import API_VERSION

    assert API_VERSION.startswith("1.")
    assert future.errors == ["not loaded: it needs fturun plugin API >=2.0,<3, and this fturun "
                             f"provides API {API_VERSION}: install a version of the plugin made "
                             "for API 1.x, or a fturun whose plugin API is in >=2.0,<3"]
    assert "future_loss" not in loaded.registry.components["loss"]
    assert by_name["present"].status == "ok" and "present_loss" in loaded.registry.names("loss")
    assert by_name["odd"].status == "failed"
    assert "'one point oh' is not a version range" in by_name["odd"].errors[0]
    # a recipe naming the refused plugin's loss is told why it is not there
    recipe = testing.tiny_recipe(tmp_path, loss="future_loss")
    message = str(testing.validate(recipe, loaded)[0])
    assert "$.loss" in message
    assert "'future_loss' is not a registered loss: its plugin 'future' failed to load " \
           "(not loaded: it needs fturun plugin API >=2.0,<3" in message


# --------------------------------------------------------------------------------------------
# register: the documented four arguments; closed params schemas; defaults reach factories


def test_register_takes_the_documented_arguments_and_nothing_private():
    signature = inspect.signature(load_plugins.__globals__["_Register"].__call__)
    assert list(signature.parameters) == ["self", "name", "factory", "params_schema",
                                          "description"]

    class NoDescription:
        @hookimpl
        def fturun_register_metrics(self, register):
            register("terse", lambda p, c: None, None)

    class Private:
        @hookimpl
        def fturun_register_metrics(self, register):
            register("sneaky", lambda p, c: None, None, "a loss", _kind="loss")

    loaded = load_plugins(extra_plugins={"terse": NoDescription(), "private": Private()},
                          entry_points=False)
    by_name = {p.name: p for p in loaded.plugins}
    assert by_name["terse"].status == "failed"
    assert "missing 1 required positional argument: 'description'" in by_name["terse"].errors[0]
    assert "unexpected keyword argument '_kind'" in by_name["private"].errors[0]
    assert "sneaky" not in loaded.registry.components["loss"]


class SchemaPlugin:
    """Components whose params schemas leave additionalProperties unsaid, in each shape."""

    @hookimpl
    def fturun_register_callbacks(self, register):
        register("bare", lambda p, c: None, {"type": "object"}, "no params, said loosely")
        register("composed", lambda p, c: None,
                 {"type": "object", "anyOf": [{"properties": {"a": {"type": "integer"}}},
                                              {"properties": {"b": {"type": "integer"}}}]},
                 "params from anyOf")
        register("open", lambda p, c: None, {"type": "object", "additionalProperties": True},
                 "takes any key")


def test_params_schemas_refuse_unknown_keys_unless_they_say_otherwise(tmp_path):
    loaded = testing.load_plugin(SchemaPlugin(), "schemas")
    registry = loaded.registry
    assert registry.get("callback", "bare").params_schema == {
        "type": "object", "additionalProperties": False}
    assert registry.get("callback", "composed").params_schema["unevaluatedProperties"] is False
    assert "unevaluatedProperties" not in registry.get("callback", "open").params_schema

    def problems(name, params):
        recipe = testing.tiny_recipe(tmp_path, callbacks=[{"name": name, "params": params}])
        return [str(p) for p in testing.validate(recipe, loaded)]

    bare = problems("bare", {"every": 2})
    assert len(bare) == 1 and "$.callbacks[0].params.every" in bare[0]
    assert "unknown key 'every'" in bare[0]
    assert problems("bare", {}) == []
    assert problems("composed", {"a": 1}) == [] and problems("composed", {"b": 2}) == []
    composed = problems("composed", {"a": 1, "c": 3})
    assert len(composed) == 1 and "'c'" in composed[0]
    assert problems("open", {"anything": [1, 2]}) == []


def test_factories_get_params_with_the_schema_defaults_filled_in(tmp_path):
    seen = []

    class Defaults:
        @hookimpl
        def fturun_register_losses(self, register):
            schema = {"type": "object", "properties": {
                "margin": {"type": "number", "default": 1.5},
                "weights": {"type": "array", "default": [1, 2]},
                "inner": {"type": "object", "properties": {
                    "depth": {"type": "integer", "default": 3},
                    "width": {"type": "integer"}}},
                "choice": {"anyOf": [{"type": "object", "properties": {
                    "x": {"type": "integer", "default": 9}}}, {"type": "string"}]}}}
            register("seeing", lambda params, context: seen.append(params) or
                     (lambda outputs, labels: None), schema, "records its params")

    loaded = testing.load_plugin(Defaults(), "defaults")
    from fturun.run.build import build_component

    context = testing.make_context()
    build_component(loaded.registry, "loss", "seeing", context)
    build_component(loaded.registry, "loss", {"name": "seeing", "params": {
        "margin": 0.5, "inner": {"width": 4}, "choice": {}}}, context)
    assert seen[0] == {"margin": 1.5, "weights": [1, 2]}
    assert seen[1] == {"margin": 0.5, "weights": [1, 2], "inner": {"width": 4, "depth": 3},
                       "choice": {}}  # a branch of anyOf is the value's business
    seen[0]["weights"].append(3)  # each call gets its own copy of a default
    build_component(loaded.registry, "loss", "seeing", context)
    assert seen[2]["weights"] == [1, 2]


# --------------------------------------------------------------------------------------------
# the loss contract: a plain mean, scaled by fturun


class _Args:
    gradient_accumulation_steps = 4


class _Trainer:
    """What MeanLoss reads of a Trainer."""

    args = _Args()
    current_gradient_accumulation_steps = 2


def test_a_plain_mean_loss_is_scaled_to_its_share_of_the_optimizer_step():
    import torch

    from fturun.run.wiring import MeanLoss

    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 2, -100, 1, 1, -100])  # 4 labelled items here
    mean = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100)
    loss = MeanLoss("ce", lambda outputs, labels: torch.nn.functional.cross_entropy(
        outputs["logits"], labels, ignore_index=-100))
    trainer = _Trainer()
    loss.bind(trainer)
    # the step has 10 labelled items (every micro-batch, every process): this one is 4 of them
    assert torch.allclose(loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(10)),
                          mean * 4 / 10)
    # no count (evaluation without one): the mean itself
    with torch.no_grad():
        assert torch.allclose(loss({"logits": logits}, labels), mean)
    # a training step without labels: divided by the micro-batches accumulated
    unlabelled = MeanLoss("free", lambda outputs, labels: outputs["logits"].mean())
    unlabelled.bind(trainer)
    assert torch.allclose(unlabelled({"logits": logits}, None), logits.mean() / 2)
    # a causal LM's loss shifts its labels: position 0 is not counted
    trainer._loss_shifts_labels = True
    rows = torch.tensor([[5, 6, 7], [8, -100, 9]])  # 5 labels, 3 shifted targets (6, 7, 9)
    shifted = MeanLoss("lm", lambda outputs, labels: torch.tensor(2.0))
    shifted.bind(trainer)
    assert shifted({}, rows, num_items_in_batch=torch.tensor(8)).item() == pytest.approx(2 * 3 / 8)


def test_a_loss_that_is_not_one_number_is_refused_naming_it():
    import torch

    from fturun.run.wiring import MeanLoss

    per_item = MeanLoss("per_item", lambda outputs, labels: torch.ones(4))
    with pytest.raises(RecipeRuntimeError, match=r"loss 'per_item' returned a tensor of shape "
                                                 r"\(4,\); a loss returns one number"):
        per_item({}, torch.zeros(4))
    with pytest.raises(RecipeRuntimeError, match="loss 'floaty' returned float"):
        MeanLoss("floaty", lambda outputs, labels: 0.5)({}, torch.zeros(4))


def _train_in_process(recipe: dict, registry, output_dir: Path):
    """The build, training and evaluation steps of ``fturun RECIPE`` in this process (tracking
    off, nothing saved); returns the session."""
    from fturun.run.session import RunSession

    recipe.setdefault("training", {})["output_dir"] = str(output_dir)
    session = RunSession(testing._recipe(recipe), registry, str(output_dir))
    session.make_trainer()
    session.train()
    session.evaluate()
    return session


def _weights(trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_accumulation_2_x_batch_4_trains_exactly_like_batch_8(author, tmp_path):
    import torch

    loaded = testing.load_plugin(author, "author")
    base = regression_recipe(callbacks=[], metrics=["mae"])
    del base["data"]["test"]
    whole = _train_in_process(json.loads(json.dumps(base)), loaded.registry, tmp_path / "b8")
    accumulated = json.loads(json.dumps(base))
    accumulated["training"].update(per_device_train_batch_size=4, gradient_accumulation_steps=2)
    halves = _train_in_process(accumulated, loaded.registry, tmp_path / "b4x2")

    losses = [[e["loss"] for e in r.trainer.state.log_history if "loss" in e]
              for r in (whole, halves)]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    a, b = _weights(whole.trainer), _weights(halves.trainer)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-7), key
    assert whole.result.metrics["eval"]["eval_loss"] == pytest.approx(
        halves.result.metrics["eval"]["eval_loss"], rel=1e-5)


# --------------------------------------------------------------------------------------------
# what optimizer and scheduler factories may return, checked


@pytest.mark.parametrize("section, result, message", [
    ("optimizer", ["adamw"], "optimizer 'x' returned ['adamw']; a optimizer factory returns a "
                             "dict with \"training_args\" and/or \"optimizer_cls_and_kwargs\""),
    ("scheduler", {"lr_scheduler_type": "cosine"}, "scheduler 'x' returned {'lr_scheduler_type'"
                                                   ": 'cosine'}; a scheduler factory returns a "
                                                   "dict with \"training_args\" and/or "
                                                   "\"scheduler\""),
    ("scheduler", {"training_args": {"lr_schedule": "cosine"}},
     "scheduler 'x': training_args has lr_schedule, which TrainingArguments does not have"),
    ("optimizer", {"optimizer_cls_and_kwargs": ("SGD", {})},
     "optimizer 'x': optimizer_cls_and_kwargs must be a tuple (cls, kwargs dict)"),
    ("scheduler", {"scheduler": "cosine"}, "scheduler 'x': scheduler must be a callable "
                                           "make_scheduler(optimizer, num_training_steps)"),
])
def test_optimizer_and_scheduler_returns_are_checked(section, result, message):
    from fturun.run.wiring import checked_settings

    with pytest.raises(RecipeRuntimeError) as caught:
        checked_settings(section, "x", result)
    assert str(caught.value).startswith(message)
    assert checked_settings(section, "x", None) == {}
    assert checked_settings("scheduler", "x", {"training_args": {"warmup_steps": 3}})


# --------------------------------------------------------------------------------------------
# messages: a component of a disabled or failed plugin names it


class HalfBroken:
    @hookimpl
    def fturun_register_losses(self, register):
        register("half_loss", lambda p, c: None, None, "registered before the hook raised")
        raise ValueError("no GPU here")

    @hookimpl
    def fturun_register_tasks(self, register):
        pass


def test_a_component_of_a_disabled_or_failed_plugin_names_the_plugin(author, tmp_path,
                                                                     monkeypatch):
    from fturun.plugin.tasks import get_task
    from fturun.run.build import build_component

    monkeypatch.setenv("FTURUN_DISABLE_PLUGINS", "author")
    loaded = load_plugins(extra_plugins={"author": author, "half": HalfBroken()},
                          entry_points=False)
    by_name = {p.name: p for p in loaded.plugins}
    assert by_name["author"].status == "disabled" and by_name["author"].components == {}
    assert by_name["half"].status == "failed"
    assert not {"mse", "half_loss"} & set(loaded.registry.names("loss"))

    recipe = testing.tiny_recipe(tmp_path, loss="mse", callbacks=["step_logger"])
    problems = {p.path: p.message for p in testing.validate(recipe, loaded)}
    disabled = ("its plugin 'author' is disabled (FTURUN_DISABLE_PLUGINS); take it out of that "
                "list to use it")
    assert problems == {"$.loss": f"'mse' is not a registered loss: {disabled}",
                        "$.callbacks[0]": f"'step_logger' is not a registered callback: "
                                          f"{disabled}"}
    failed = testing.validate(testing.tiny_recipe(tmp_path, loss="half_loss"), loaded)
    assert failed[0].message == (
        "'half_loss' is not a registered loss: its plugin 'half' failed to load (hook "
        "fturun_register_losses raised ValueError: no GPU here); `fturun plugins` shows every "
        "error")
    task = testing.validate(regression_recipe(), loaded)
    assert any(p.path == "$.task" and f"'text-regression' is not a registered task: {disabled}"
               == p.message for p in task)
    # the same where a run looks a name up
    with pytest.raises(RecipeRuntimeError, match=re.escape(f"'mse' is not a registered loss: "
                                                           f"{disabled}")):
        build_component(loaded.registry, "loss", "mse", testing.make_context())
    with pytest.raises(RecipeRuntimeError, match="task 'text-regression' is not registered: "
                                                 "its plugin 'author' is disabled"):
        get_task(loaded.registry, "text-regression")
    # a name no plugin has keeps the "did you mean"
    unknown = testing.validate(testing.tiny_recipe(tmp_path, loss="mse2"), loaded)
    assert "'mse2' is not a registered loss; registered:" in unknown[0].message


def test_components_headings_are_the_kinds_plurals(cli):
    code, out, _ = cli("components")
    assert code == 0
    headings = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert headings == [f"{PLURALS[kind]}:" for kind in KINDS]
    assert "losses:" in headings and "losss:" not in out


# --------------------------------------------------------------------------------------------
# meta-tests: every hook documented (hookspecs.py, its rendering in the docs) and registered
# through by a test


def _plugins_page() -> str:
    """docs/plugins.md, the plugin author's guide."""
    return (ROOT / "docs" / "plugins.md").read_text()


def _hooks_reference() -> str:
    """docs/reference/hooks.md, rendered from hookspecs.py (tests/test_docs.py: fresh)."""
    return (ROOT / "docs" / "reference" / "hooks.md").read_text()


def test_every_hook_is_documented_with_its_signature():
    assert HOOKS == sorted([f"fturun_register_{PLURALS[k]}" for k in KINDS]
                           + ["fturun_register_tasks"])
    reference = _hooks_reference()
    for name in HOOKS:
        hook = getattr(hookspecs, name)
        assert list(inspect.signature(hook).parameters) == ["register"], name
        doc = inspect.getdoc(hook)
        contract = "Record contract: call ``register(task)``" if name == "fturun_register_tasks" \
            else "Factory contract: ``factory(params, context) ->"
        assert contract in doc, name
        assert f"`{name}(register)`" in reference, \
            f"docs/reference/hooks.md: no row for {name}(register)"
    # the typed contracts name one factory protocol per kind
    import fturun.plugin.contracts as contracts

    for kind in KINDS:
        assert hasattr(contracts, f"{kind.capitalize()}Factory"), kind


def test_every_hook_is_registered_through_by_the_author_plugin_and_used_by_its_runs(author):
    from fturun.api import component_name

    loaded = testing.load_plugin(author, "author")
    info = next(p for p in loaded.plugins if p.name == "author")
    # one registration through every hook
    assert set(info.components) == {*KINDS, "task"}
    # and the recipe of the run tests (check, run, accumulation, launch) names, for every
    # hook, a component the author plugin registered through it
    recipe = regression_recipe()
    named = {"task": recipe["task"], "dataset": component_name(recipe["data"]["train"]),
             "model": recipe["model"], "adapter": recipe["adapter"],
             "collator": recipe["collator"], "loss": recipe["loss"],
             "metric": component_name(recipe["metrics"][0]),
             "callback": component_name(recipe["callbacks"][0]),
             "optimizer": component_name(recipe["optimizer"]),
             "scheduler": component_name(recipe["scheduler"]),
             # a reward needs a task that takes rewards: the GRPO run of
             # tests/test_trl_rl.py::test_a_third_party_reward_is_usable_by_name names it
             "reward": "shouting"}
    assert set(named) == set(info.components)
    for kind, name in named.items():
        assert name in info.components[kind], (kind, name)


# --------------------------------------------------------------------------------------------
# every code example of docs/plugins.md and of plugins/fturun-example/README.md


FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(text: str) -> list:
    return [(lang, body) for lang, body in FENCE.findall(text)]


def _first_line_path(body: str) -> str | None:
    first = body.splitlines()[0]
    match = re.match(r"# ([\w/]+\.(?:py|toml))\b", first)
    return match.group(1) if match else None


def _pip_install_env(site: Path) -> dict:
    """pip (and what it installs) into ``site`` only, offline; fturun from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_TARGET=str(site), PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0",
               PIP_QUIET="1", PIP_NO_INDEX="1", PYTHONPATH=str(site), HF_HUB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_readme_plugin_section_examples_run(run_fturun, tmp_path):
    """The plugin module, pyproject and tests of the Plugins page (docs/plugins.md), as files:
    the distribution pip-installs and `fturun plugins` finds it; its tests pass under pytest."""
    project = tmp_path / "project"
    blocks = _blocks(_plugins_page())
    assert [lang for lang, _ in blocks] == ["python", "toml", "python", "python"]
    for lang, body in blocks:
        relative = _first_line_path(body)
        assert relative, f"a {lang} block without its file name: {body[:60]}"
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    (project / "my_package" / "__init__.py").write_text("")
    site = tmp_path / "site"
    env = _pip_install_env(site)
    installed = subprocess.run([sys.executable, "-m", "pip", "install", str(project)], env=env,
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    listed = run_fturun("plugins", env={"PYTHONPATH": str(site)})
    plugin = next(p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "my_plugin")
    assert plugin["status"] == "ok", plugin
    assert plugin["api"] == ">=1.0,<2" and plugin["version"] == "0.1.0"
    assert plugin["components"] == {"loss": ["squared_hinge"], "callback": ["lr_logger"]}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--basetemp={tmp_path / 'bt'}", "tests/test_my_plugin.py"],
                           cwd=project, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "1 passed" in tests.stdout


EXAMPLE_README = ROOT / "plugins" / "fturun-example" / "README.md"


def test_example_readme_fragments_agree_with_the_example(example_loaded, tmp_path):
    """The example README's toml, json, schema and error-message blocks against the real
    distribution (its bash and test blocks run in the slow tests below)."""
    import tomllib
    from jsonschema import Draft202012Validator

    kinds = []
    for lang, body in _blocks(EXAMPLE_README.read_text()):
        kinds.append(lang)
        if lang == "toml":
            fragment = tomllib.loads(body)
            real = tomllib.loads((EXAMPLE_README.parent / "pyproject.toml").read_text())
            assert fragment["project"]["entry-points"] == real["project"]["entry-points"]
            assert fragment["project"]["name"] == real["project"]["name"]
            assert fragment["project"]["dependencies"] == real["project"]["dependencies"]
        elif lang == "json":
            recipe = testing.tiny_recipe(tmp_path)
            recipe.update(json.loads("{" + body + "}"))
            (tmp_path / "news.db").touch()
            problems = testing.validate(recipe, example_loaded, base_dir=tmp_path)
            assert problems == [], problems
        elif lang == "python" and body.startswith("{"):
            schema = eval(body)  # a params schema, as the README shows it
            Draft202012Validator.check_schema(schema)
            import fturun_example

            assert schema["properties"]["query"]["pattern"] == fturun_example.SELECT_PATTERN
        elif lang == "" and "::$." in body:
            location, message = body.strip().split(": ", 1)
            recipe = testing.tiny_recipe(tmp_path, loss={"name": "poly1",
                                                         "params": {"epsiln": 2}})
            found = [p for p in testing.validate(recipe, example_loaded)
                     if p.path == location.split("::")[1].split(" ")[0]]
            assert [p.message for p in found] == [message]
    assert sorted(kinds) == sorted(["bash", "json", "toml", "text", "python", "", "python"])


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_example_readme_shell_and_test_blocks_run(tmp_path):
    blocks = _blocks(EXAMPLE_README.read_text())
    shell = [body for lang, body in blocks if lang == "bash"]
    assert len(shell) == 1
    # the block runs "from the fturun repository root": a copy of what it reads (a clean
    # plugin source: a build in place would leave build/ in this checkout)
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "plugins" / "fturun-example", repo / "plugins" / "fturun-example",
                    ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    (repo / "recipes").mkdir()
    shutil.copy(ROOT / "recipes" / "lora_cls.json", repo / "recipes")
    site = tmp_path / "site"
    result = subprocess.run(["bash", "-e", "-c", shell[0]], cwd=repo, env=_pip_install_env(site),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout[:result.stdout.index("\n}\n") + 2])
    example = next(p for p in report["plugins"] if p["name"] == "example")
    assert example["status"] == "ok" and example["api"] == ">=1.0,<2"
    assert "check passed" in result.stdout
    test_block = [body for lang, body in blocks if lang == "python" and "testing" in body]
    assert len(test_block) == 1
    script = tmp_path / "readme_test.py"
    script.write_text(test_block[0])
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"})
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# the testing helpers' own failures are clear


def test_testing_helpers_fail_with_the_plugin_and_recipe_errors(tmp_path):
    class Broken:
        @hookimpl
        def fturun_register_losses(self, register):
            register("Bad Name", lambda p, c: None, None, "bad")

    with pytest.raises(AssertionError, match=r"plugin 'broken' did not load \(failed\): loss "
                                             r"name 'Bad Name' is invalid"):
        testing.load_plugin(Broken(), "broken")
    loaded = load_plugins(entry_points=False)
    with pytest.raises(AssertionError, match=r"the recipe is invalid:\n.*\$\.loss"):
        testing.check(testing.tiny_recipe(tmp_path, loss="nope"), loaded)
    with pytest.raises(AssertionError, match="loss 'focal': params .* are invalid"):
        testing.build_component(loaded, "loss", {"name": "focal", "params": {"gamma": -1}})
    focal = testing.build_component(loaded, "loss", "focal")  # gamma 2.0 from the schema
    assert callable(focal)


# --------------------------------------------------------------------------------------------
# the author plugin, installed: fturun check, fturun RECIPE tracked, accumulation, 2 processes


def test_check_with_the_author_plugin_and_a_callback_logging_through_the_tracker(run_fturun,
                                                                                 author_site,
                                                                                 tmp_path):
    path = write_recipe(tmp_path, regression_recipe(
        callbacks=[{"name": "step_logger", "params": {"every": 1}}]))
    result = run_fturun("check", path, env={"PYTHONPATH": str(author_site)}, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    assert "check passed" in result.stdout
    assert "eval_mae" in result.stdout  # the task's metric on the check's eval batch


@pytest.fixture
def train(run_fturun):
    """``train(recipe, folder, site, *launch, env=None)``: the recipe written into ``folder``
    and run (``launch ...`` first if given) with the plugins of ``site``; must succeed."""
    def run(recipe: dict, folder: Path, site: Path, *launch, env=None):
        path = write_recipe(folder, recipe)
        command = [*launch, path] if launch else [path]
        result = run_fturun(*command, env={"PYTHONPATH": str(site), **(env or {})}, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-5000:]
        return result
    return run


def _saved_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model" / "model.safetensors"))


@pytest.mark.slow
def test_a_plain_mean_loss_trains_alike_under_accumulation_and_two_processes(
        train, author_site, mlflow_server, tmp_path):
    """Batch 8 (tracked), 4 x accumulation 2, and 2 processes x 4 (`fturun launch`, gloo):
    every step covers the 8 rows, so the weights after the run must agree."""
    import torch
    from mlflow.tracking import MlflowClient

    base = regression_recipe()
    whole = json.loads(json.dumps(base))
    whole["training"]["output_dir"] = str(tmp_path / "b8" / "out")
    whole["tracking"] = {"tracking_uri": mlflow_server, "experiment": "plugin-api"}
    train(whole, tmp_path / "b8", author_site)
    accumulated = json.loads(json.dumps(base))
    accumulated["training"].update(per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                   output_dir=str(tmp_path / "b4x2" / "out"))
    train(accumulated, tmp_path / "b4x2", author_site)
    two = json.loads(json.dumps(base))
    two["training"].update(per_device_train_batch_size=4,
                           output_dir=str(tmp_path / "ddp" / "out"))
    launched = train(two, tmp_path / "ddp", author_site, "launch", "--nproc", "2")
    assert "engine: 2 processes" in launched.stdout

    outs = [tmp_path / name / "out" for name in ("b8", "b4x2", "ddp")]
    reference = _saved_weights(outs[0])
    for out in outs[1:]:
        weights = _saved_weights(out)
        for key, value in reference.items():
            assert torch.allclose(value, weights[key], rtol=1e-4, atol=1e-6), (out, key)
    losses = [[e["loss"] for e in json.loads((o / "trainer_state.json").read_text())[
        "log_history"] if "loss" in e] for o in outs]
    assert len(losses[0]) == 2
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert losses[2] == pytest.approx(losses[0], rel=1e-4)
    steps = [json.loads((o / "steps.json").read_text()) for o in outs]
    assert [s["world_size"] for s in steps] == [1, 1, 2]
    # plain_sgd's lr 0.05, halved by the scheduler after each step (on_step_end sees the next)
    assert [e["lr"] for e in steps[0]["steps"]] == [0.025, 0.0125]

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.search_runs([client.get_experiment_by_name("plugin-api").experiment_id])[0]
    params = run.data.params
    assert params["args.optim"] == "plain_sgd (fturun_author_plugin.optim.PlainSGD)"
    assert params["args.optim_args"] == "lr=0.05"
    assert params["args.lr_scheduler_type"] == \
        "halving (fturun_author_plugin.factories.halving.<locals>.make)"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "author_lr")] == \
        [0.025, 0.0125]
    assert run.data.tags["author.steps"] == "2"
    assert "steps.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    results = json.loads((outs[0] / "eval_results.json").read_text())
    assert "eval_mae" in results and "test_mae" in results
    predictions = (outs[0] / "test_predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 2 and set(json.loads(predictions[0])) == {"prediction", "label"}
