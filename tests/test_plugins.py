"""The plugin system: built-ins through the hooks, entry-point plugins, isolation of broken ones."""

import json
import os

from helpers import RECIPES, site_env

from fturun import hookimpl, hookspecs
from fturun.plugin.manager import BUILTIN_PLUGINS, load_plugins
from fturun.plugin.registry import KINDS, PLURALS
from fturun.recipe.load import load_recipe
from fturun.schema import compose_schema, validate_recipe


def test_builtins_register_every_kind_through_the_hooks():
    loaded = load_plugins()
    assert {p.name for p in loaded.plugins} >= set(BUILTIN_PLUGINS)
    assert all(p.status == "ok" for p in loaded.plugins if p.name in BUILTIN_PLUGINS)
    for kind in KINDS:
        assert loaded.registry.names(kind), f"no built-in {kind}"


class InProcessPlugin:
    """A plugin object registered in a test (not installed)."""

    @hookimpl
    def fturun_register_callbacks(self, register):
        register("print_step", lambda params, context: None,
                 {"type": "object", "required": ["every"],
                  "properties": {"every": {"type": "integer", "minimum": 1}}},
                 "Print every N steps (test)")


def test_plugin_registered_in_a_test_shows_in_schema_and_validation(tmp_path):
    loaded = load_plugins(extra_plugins={"inproc": InProcessPlugin()})
    schema = compose_schema(loaded.registry)
    assert "print_step" in json.dumps(schema["$defs"]["callback"])
    recipe_file = tmp_path / "r.json"
    base = json.loads((RECIPES / "lora_cls.json").read_text())
    base["callbacks"] = [{"name": "print_step", "params": {"every": 0}}]
    recipe_file.write_text(json.dumps(base))
    problems = validate_recipe(load_recipe(recipe_file), loaded.registry)
    assert [p.path for p in problems] == ["$.callbacks[0].params.every"]
    base["callbacks"] = [{"name": "print_step", "params": {"every": 5}}]
    recipe_file.write_text(json.dumps(base))
    assert validate_recipe(load_recipe(recipe_file), loaded.registry) == []
    # without the plugin, the same recipe names an unknown callback
    problems = validate_recipe(load_recipe(recipe_file), load_plugins().registry)
    assert "not a registered callback" in problems[0].message


class RaisingPlugin:
    @hookimpl
    def fturun_register_losses(self, register):
        register("ok_loss", lambda p, c: None, {"type": "object"}, "fine")
        raise RuntimeError("boom in hook")


class InvalidSchemaPlugin:
    @hookimpl
    def fturun_register_metrics(self, register):
        register("good_metric", lambda p, c: None, {"type": "object"}, "fine")
        register("bad_metric", lambda p, c: None, {"type": "not-a-type"}, "bad schema")


class BadNamePlugin:
    @hookimpl
    def fturun_register_metrics(self, register):
        register("Bad Name", lambda p, c: None, {}, "bad name")


class WrongArgumentPlugin:
    @hookimpl
    def fturun_register_metrics(self, reg):  # pluggy refuses unknown argument names
        pass


def test_failing_plugins_are_reported_and_isolated():
    loaded = load_plugins(extra_plugins={
        "raising": RaisingPlugin(), "invalid-schema": InvalidSchemaPlugin(),
        "bad-name": BadNamePlugin(), "wrong-arg": WrongArgumentPlugin()})
    by_name = {p.name: p for p in loaded.plugins}
    assert by_name["raising"].status == "failed"
    assert "boom in hook" in by_name["raising"].errors[0]
    assert "fturun_register_losses" in by_name["raising"].errors[0]
    assert by_name["invalid-schema"].status == "failed"
    assert "bad_metric" in by_name["invalid-schema"].errors[0]
    assert "invalid params schema" in by_name["invalid-schema"].errors[0]
    assert "invalid" in by_name["bad-name"].errors[0]
    assert by_name["wrong-arg"].status == "failed"
    # all or nothing: nothing of a failed plugin is registered; built-ins all work
    assert "ok_loss" not in loaded.registry.components["loss"]
    assert "good_metric" not in loaded.registry.components["metric"]
    assert "accuracy" in loaded.registry.components["metric"]


def test_duplicate_name_is_refused_naming_both_plugins():
    class Dup:
        @hookimpl
        def fturun_register_adapters(self, register):
            register("lora", lambda p, c: None, {"type": "object"}, "my lora")

    loaded = load_plugins(extra_plugins={"mine": Dup()})
    info = next(p for p in loaded.plugins if p.name == "mine")
    assert info.status == "failed"
    assert "builtin.adapters" in info.errors[0] and "mine" in info.errors[0]
    assert loaded.registry.get("adapter", "lora").plugin == "builtin.adapters"


def test_every_hook_is_documented_and_named_for_its_kind():
    hooks = {name for name in dir(hookspecs) if name.startswith("fturun_register_")}
    # one hook per component kind, plus the task records' hook
    assert hooks - {"fturun_register_tasks"} == {f"fturun_register_{PLURALS[k]}" for k in KINDS}
    for name in hooks - {"fturun_register_tasks"}:
        doc = getattr(hookspecs, name).__doc__
        assert doc and "Factory contract" in doc, name
    assert "Record contract" in hookspecs.fturun_register_tasks.__doc__


def test_every_builtin_component_has_description_and_schema():
    loaded = load_plugins()
    for kind in KINDS:
        for component in loaded.registry.components[kind].values():
            if component.plugin.startswith("builtin."):
                assert component.description and "\n" not in component.description
                assert component.params_schema.get("type") == "object"
                assert component.factory.__doc__, f"{kind} {component.name} factory undocumented"


def test_installed_entry_point_plugins_work_and_a_broken_one_is_isolated(run_fturun, plugin_site):
    env = site_env(plugin_site)
    result = run_fturun("plugins", env=env)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["good"]["status"] == "ok"
    assert plugins["good"]["version"] == "1.2.3"
    assert plugins["good"]["components"] == {"loss": ["squared_hinge"],
                                             "metric": ["balanced_accuracy"]}
    assert plugins["broken"]["status"] == "failed"
    assert "a_module_that_does_not_exist" in plugins["broken"]["errors"][0]
    assert plugins["dup"]["status"] == "failed"
    assert "builtin.losses" in plugins["dup"]["errors"][0]

    schema = run_fturun("schema", env=env)
    assert schema.returncode == 0
    assert "squared_hinge" in schema.stdout
    assert "warning: plugin 'broken' not loaded" in schema.stderr

    recipe = RECIPES / "lora_cls.json"
    ok = run_fturun("validate", recipe, "--set", 'loss={"name": "squared_hinge", '
                    '"params": {"margin": 1}}', env=env)
    assert ok.returncode == 0, ok.stderr
    bad = run_fturun("validate", recipe, "--set", 'loss={"name": "squared_hinge", '
                     '"params": {"margn": 1}}', env=env)
    assert bad.returncode == 2
    assert "$.loss.params.margn" in bad.stderr and "did you mean 'margin'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_disable_plugins_by_name(run_fturun, plugin_site):
    env = {**site_env(plugin_site), "FTURUN_DISABLE_PLUGINS": "broken, good,dup"}
    result = run_fturun("plugins", env=env)
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["broken"]["status"] == "disabled"
    assert plugins["good"]["status"] == "disabled"
    schema = run_fturun("schema", env=env)
    loss_names = json.loads(schema.stdout)["$defs"]["loss"]["then"]
    assert "squared_hinge" not in loss_names["enum"]
    assert "'good' is disabled" in loss_names["x-fturun-unavailable"]["squared_hinge"]
    assert "warning" not in schema.stderr
    os.environ.pop("FTURUN_DISABLE_PLUGINS", None)


# --- tasks: records registered through fturun_register_tasks --------------------------------


def _regression_task(**changes):
    from fturun.api import Task

    fields = {"name": "regression", "description": "One number per text (test)",
              "model_class": "AutoModelForSequenceClassification",
              "tokenize": lambda ds, tokenizer, settings, split: ds,
              "metric_inputs": lambda eval_pred, context: (eval_pred.predictions,
                                                           eval_pred.label_ids)}
    return Task(**{**fields, **changes})


class TaskPlugin:
    def __init__(self, *tasks, loss=None):
        self.tasks, self.loss = tasks, loss

    @hookimpl
    def fturun_register_tasks(self, register):
        for task in self.tasks:
            register(task)

    @hookimpl
    def fturun_register_losses(self, register):
        if self.loss:
            register(self.loss, lambda p, c: None, {"type": "object"}, "a loss (test)")


def test_builtin_tasks_are_records_found_by_name():
    from fturun.core.errors import RecipeRuntimeError
    from fturun.plugin.tasks import get_task

    loaded = load_plugins()
    assert sorted(loaded.registry.tasks) == ["causal-lm", "masked-lm", "seq2seq",
                                             "sequence-classification", "token-classification"]
    info = next(p for p in loaded.plugins if p.name == "builtin.tasks")
    assert info.status == "ok" and len(info.components["task"]) == 5
    causal = get_task(loaded.registry, "causal-lm")
    assert causal.model_class == "AutoModelForCausalLM" and causal.peft_task_type == "CAUSAL_LM"
    assert causal.collator_for({"packing": True}) == "packing"
    assert causal.collator_for({})["name"] == "language_modeling"
    assert causal.metrics_for(None) == ["perplexity"]
    assert causal.metrics_for(["accuracy"]) == ["accuracy", "perplexity"]
    assert get_task(loaded.registry, "seq2seq").metrics_for(None) == ["rouge", "bleu"]
    try:
        get_task(loaded.registry, "causal_lm")
    except RecipeRuntimeError as exc:
        assert "did you mean 'causal-lm'" in str(exc)
    else:
        raise AssertionError("an unknown task was found")


def test_a_plugin_adds_a_task():
    loaded = load_plugins(extra_plugins={"regress": TaskPlugin(_regression_task())})
    info = next(p for p in loaded.plugins if p.name == "regress")
    assert info.status == "ok" and info.components == {"task": ["regression"]}
    assert loaded.registry.tasks["regression"].trainer_classes()[0].__name__ == "Trainer"
    assert loaded.registry.task_plugins["regression"] == "regress"


def test_invalid_or_duplicate_tasks_are_reported_and_the_plugin_skipped():
    loaded = load_plugins(extra_plugins={
        "dup-task": TaskPlugin(_regression_task(name="causal-lm"), loss="dup_task_loss"),
        "bad-task": TaskPlugin(_regression_task(trainer="mine", data_keys={"frames"})),
        "not-a-task": TaskPlugin({"name": "regression"})})
    by_name = {p.name: p for p in loaded.plugins}
    assert by_name["dup-task"].status == "failed"
    assert "builtin.tasks" in by_name["dup-task"].errors[0]
    assert "dup_task_loss" not in loaded.registry.components["loss"]  # all or nothing
    assert loaded.registry.task_plugins["causal-lm"] == "builtin.tasks"
    errors = by_name["bad-task"].errors[0]
    assert "trainer 'mine'" in errors and "frames" in errors
    assert "takes a fturun.api.Task" in by_name["not-a-task"].errors[0]
    assert "regression" not in loaded.registry.tasks


def test_every_built_in_params_schema_is_a_valid_json_schema(registry):
    """fturun's own components skip the meta-schema check at load (it costs ~6 ms a schema on
    every command): this test is that check."""
    from jsonschema import Draft202012Validator

    from fturun.plugin.manager import BUILTIN_PLUGINS

    builtins = [c for kind in registry.components.values() for c in kind.values()
                if c.plugin in BUILTIN_PLUGINS]
    assert len(builtins) > 50
    for component in builtins:
        Draft202012Validator.check_schema(component.params_schema)
