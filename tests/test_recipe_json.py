"""Numbers and JSON (issue 17, items 5-8 and 10): non-finite numbers and duplicate keys are
located errors, in a file and in an override; an `extends` chain of any length is read without
recursion; an integer field takes a JSON integer only (`16`, never `16.0` or `16.5`), in every
section, every component's params, DeepSpeed configs and search spaces."""

import json
import time

import pytest
from helpers import RECIPES

LORA = RECIPES / "lora_cls.json"


def _validate(cli, path, *overrides):
    args = ["validate", path]
    for override in overrides:
        args += ["--set", override]
    code, _, err = cli(*args)
    assert code == 2, err
    assert "Traceback" not in err
    return err


def _recipe(tmp_path, text, name="r.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _at(text, needle, occurrence=0) -> str:
    """``line L, col C`` of the ``occurrence``-th ``needle`` in ``text`` (1-based), found by a
    plain text search: the oracle for the positions fturun reports."""
    offset = -1
    for _ in range(occurrence + 1):
        offset = text.index(needle, offset + 1)
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, col {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


# -- non-finite numbers (items 5 and 7) -------------------------------------------------------

def test_numbers_without_a_double_are_located_in_the_file(cli, tmp_path):
    huge = "9" * 5000  # past Python's int parsing limit too
    text = (f'{{"extends": "{LORA}",\n "training": {{"learning_rate": 1e999,\n'
            f'  "weight_decay": -1e999, "adam_epsilon": 1e-999}},\n "seed": {huge}}}')
    path = _recipe(tmp_path, text)
    err = _validate(cli, path)
    assert (f"{path}::$.training.learning_rate ({_at(text, '1e999')}): 1e999 is out of range: "
            "it overflows to infinity (a number may be at most about 1.8e308 in size); write a "
            "finite number") in err
    assert (f"{path}::$.training.weight_decay ({_at(text, '-1e999')}): -1e999 is out of range: "
            "it overflows to -infinity") in err
    assert (f"{path}::$.training.adam_epsilon ({_at(text, '1e-999')}): 1e-999 is too small: it "
            "rounds to 0 (the smallest number is about 5e-324); write 0 or a larger number") in err
    assert (f"{path}::$.seed ({_at(text, huge)}): 999999999999... (5000 characters) is out of "
            "range") in err
    assert "4 problems" in err


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_located_in_the_file(cli, tmp_path, literal):
    text = (f'{{"extends": "{LORA}",\n  "metrics": ["accuracy",\n'
            f'    {{"name": "f1", "params": {{"beta": {literal}}}}}]}}')
    err = _validate(cli, _recipe(tmp_path, text))
    assert (f"::$.metrics[1].params.beta ({_at(text, literal)}): {literal} is not valid JSON "
            "(JSON numbers are finite); write a number, or a string in double quotes") in err


def test_an_override_that_overflows_is_named(cli):
    err = _validate(cli, LORA, "training.learning_rate=1e999")
    assert ("override 'training.learning_rate=1e999'::$.training.learning_rate: 1e999 is out "
            "of range: it overflows to infinity") in err
    err = _validate(cli, LORA, 'metrics.1={"name": "f1", "params": {"x": [1, -1e400]}}')
    assert ("::$.metrics[1].params.x[1]: -1e400 is out of range: it overflows to -infinity "
            "(a number may be at most about 1.8e308 in size); write a finite number (at col 36 "
            "of the value)") in err


def test_a_nan_override_is_the_string_it_is_not_json(cli):
    # an override's value is JSON, else a string: NaN is not JSON, so a number field says so
    err = _validate(cli, LORA, "training.learning_rate=NaN")
    assert ("override 'training.learning_rate=NaN'::$.training.learning_rate: expected number, "
            'got string "NaN"') in err
    code, out, err = cli("validate", LORA, "--set", "tracking.run_name=NaN")
    assert code == 0, err


def test_a_run_with_an_overflowing_learning_rate_stops_before_training(cli, tmp_path):
    code, out, err = cli(LORA, "training.learning_rate=1e999", "tracking.enabled=false",
                         f"training.output_dir={tmp_path / 'out'}")
    assert code == 2
    assert "1e999 is out of range" in err
    assert not (tmp_path / "out").exists()


# -- duplicate keys (item 6) ------------------------------------------------------------------

def test_duplicate_keys_name_the_key_and_both_positions(cli, tmp_path):
    text = (f'{{"extends": "{LORA}",\n "training": {{"learning_rate": 0.1,\n'
            '   "learning_rate": 0.2},\n "seed": 1, "seed": 2,\n'
            ' "tracking": {"tags": {"a": "x"}}, "output": {"a": true}}')
    path = _recipe(tmp_path, text)
    err = _validate(cli, path)
    lr, lr_again = _at(text, '"learning_rate'), _at(text, '"learning_rate', 1)
    seed, seed_again = _at(text, '"seed'), _at(text, '"seed', 1)
    assert (f'{path}::$.training.learning_rate ({lr_again}): duplicate key "learning_rate" '
            f"(first at {lr}); keep one (JSON readers differ on which one wins)") in err
    assert f'{path}::$.seed ({seed_again}): duplicate key "seed" (first at {seed})' in err
    assert "2 problems" in err  # the same key in two different objects is no duplicate


def test_duplicate_keys_in_an_override_value(cli):
    err = _validate(cli, LORA, 'adapter.params={"r": 4, "lora_alpha": 8, "r": 8}')
    assert ("override 'adapter.params={\"r\": 4, \"lora_alpha\": 8, \"r\": 8}'::"
            '$.adapter.params.r: duplicate key "r" (first at col 2); keep one (JSON readers '
            "differ on which one wins) (at col 27 of the value)") in err


# -- a long extends chain (item 8) ------------------------------------------------------------

def _chain(tmp_path, length, top_extra=""):
    (tmp_path / "r0.json").write_text(LORA.read_text().replace(
        '"$schema": "../schemas/recipe.schema.json",', ""))
    for i in range(1, length):
        (tmp_path / f"r{i}.json").write_text(
            f'{{"extends": "r{i - 1}.json",\n "description": "level {i}"{top_extra}}}')
    return tmp_path / f"r{length - 1}.json"


def test_a_1000_file_extends_chain_is_read_without_recursion(cli, tmp_path):
    top = _chain(tmp_path, 1000)
    start = time.monotonic()
    code, out, err = cli("validate", top)
    elapsed = time.monotonic() - start
    assert code == 0, err
    assert elapsed < 10, elapsed
    from fturun.recipe.load import load_recipe

    recipe = load_recipe(str(top))
    assert recipe.data["description"] == "level 999"
    assert recipe.data["adapter"]["params"]["r"] == 16  # from r0.json, 999 files down
    assert len(recipe.files) == 1000 and recipe.files[-1].endswith("r0.json")
    assert recipe.locate(("adapter", "params", "r"))[0].endswith("r0.json")


def test_an_error_deep_in_a_long_chain_is_located_in_its_file(cli, tmp_path):
    top = _chain(tmp_path, 1000)
    (tmp_path / "r3.json").write_text('{"extends": "r2.json",\n "seed": 1.5}')
    (tmp_path / "r0.json").write_text('{"extends": "r999.json"}')  # a 1,000-file cycle
    err = _validate(cli, top)
    assert f"{tmp_path / 'r0.json'}::$.extends (line 1, col 13): 'extends' cycle: " in err
    (tmp_path / "r0.json").write_text(LORA.read_text())
    err = _validate(cli, top)
    assert f"{tmp_path / 'r3.json'}::$.seed (line 2, col 10): expected integer, got number " \
        "1.5" in err


# -- integer fields (item 10) -----------------------------------------------------------------

INTEGRAL_FLOATS = [  # one integer field of each kind of schema
    ("training.per_device_eval_batch_size", "16.0", "16"),  # TrainingArguments
    ("training.max_steps", "1e3", "1000"),
    ("training.seed", "7.0", "7"),
    ("seed", "42.0", "42"),  # the fixed sections
    ("data.max_length", "128.0", "128"),
    ("data.max_train_samples", "400.0", "400"),
    ("search", '{"n_trials": 4.0, "space": {"adapter.params.r": {"type": "int", "low": 4, '
     '"high": 8}}}', "4"),
    ("adapter.params.r", "8.0", "8"),  # a component's params
    ("callbacks", '[{"name": "early_stopping", "params": {"patience": 2.0}}]', "2"),
    ("deepspeed", '{"zero_optimization": {"stage": 2.0}}', "2"),  # an enum of integers
    ("deepspeed", '{"train_micro_batch_size_per_gpu": 16.0}', "16"),  # an integer or "auto"
]


@pytest.mark.parametrize("key, value, fix", INTEGRAL_FLOATS, ids=[f"{k}={v}"[:40] for k, v, _
                                                                   in INTEGRAL_FLOATS])
def test_integer_fields_refuse_integral_floats(cli, key, value, fix):
    err = _validate(cli, LORA, f"{key}={value}")
    assert (f"expected integer, got number {float(json.loads(fix))}; write {fix} (an integer "
            "is written without a decimal point or exponent)") in err, err
    assert "1 problem)" in err


@pytest.mark.parametrize("override, message", [
    ("training.per_device_eval_batch_size=16.5",
     "$.training.per_device_eval_batch_size: expected integer, got number 16.5\n"),
    ("adapter.params.r=2.5", "$.adapter.params.r: expected integer, got number 2.5\n"),
    ('deepspeed={"gradient_accumulation_steps": 2.5}',
     "$.deepspeed.gradient_accumulation_steps: expected integer, got number 2.5\n"),
])
def test_integer_fields_refuse_fractions(cli, override, message):
    assert message in _validate(cli, LORA, override)


def test_a_deepspeed_file_is_read_strictly_and_located(cli, tmp_path):
    ds = _recipe(tmp_path, '{"zero_optimization": {"stage": 2},\n'
                 ' "train_micro_batch_size_per_gpu": 16.0}', "ds.json")
    err = _validate(cli, LORA, f"deepspeed={ds}")
    assert (f"::$.deepspeed: {ds}::$.train_micro_batch_size_per_gpu (line 2, col 36): expected "
            "integer, got number 16.0; write 16") in err
    ds.write_text('{"zero_optimization": {"stage": 2, "stage": 3}}')
    err = _validate(cli, LORA, f"deepspeed={ds}")
    assert (f"DeepSpeed config '{ds}': {ds}::$.zero_optimization.stage (line 1, col 36): "
            'duplicate key "stage" (first at col 24)') in err


@pytest.mark.parametrize("key, value, message", [
    ("data.split.eval", "20.0", "20.0 is a number of rows (1 or more), which must be an "
     "integer: write 20, or a fraction below 1 for a share of the train rows"),
    ("data.split.eval", "20.5", "write a whole number of rows"),
    ("training.logging_steps", "5.0", "5.0 is a number of steps (1 or more), which must be an "
     "integer: write 5, or a fraction below 1 for a share of the training steps"),
    ("training.warmup_steps", "2.5", "write a whole number of steps"),
    ("scheduler", '{"name": "linear", "params": {"warmup": 10.0}}', "write 10,"),
])
def test_fraction_or_count_keys_take_an_integer_count(cli, key, value, message):
    assert message in _validate(cli, LORA, f"{key}={value}")


def test_fractions_below_one_stay_fractions(cli):
    code, _, err = cli("validate", LORA, "--set", "training.warmup_steps=0.5", "--set",
                       "data.split.eval=0.25", "--set", "training.logging_steps=10")
    assert code == 0, err


def test_search_spaces_give_integer_keys_integers(cli, tmp_path):
    text = json.dumps({"extends": str(LORA), "search": {
        "space": {
            "training.per_device_train_batch_size": {"type": "float", "low": 8, "high": 32},
            "training.gradient_accumulation_steps": {"type": "int", "low": 1.0, "high": 4,
                                                     "step": 1.5},
            "adapter.params.r": {"type": "categorical", "choices": [4, 8.0, -3]},
            "training.max_steps": {"type": "int", "low": 1, "high": 10}},
        "enqueue": [{"training.max_steps": 3.0}]}}, indent=1)
    path = _recipe(tmp_path, text)
    err = _validate(cli, path)
    space = f'{path}::$.search.space["training.'
    float_type = _at(text, '"float')
    assert (f'{space}per_device_train_batch_size"].type ({float_type}): '
            "'training.per_device_train_batch_size' takes integers, and a float range gives "
            'values like 12.7: write "type": "int"') in err
    assert (f'{space}gradient_accumulation_steps"].low ({_at(text, "1.0")}): an int range needs '
            "an integer (written without a decimal point or exponent), got 1.0; write 1") in err
    assert (f'gradient_accumulation_steps"].step ({_at(text, "1.5")}): an int range needs an '
            "integer (written without a decimal point or exponent), got 1.5\n") in err
    assert (f'{path}::$.search.space["adapter.params.r"].choices[1] ({_at(text, "8.0")}): 8.0 '
            "is not a value of 'adapter.params.r': expected integer, got number 8.0; write 8") \
        in err
    assert (f"choices[2] ({_at(text, '-3')}): -3 is not a value of 'adapter.params.r': must be "
            ">= 1, got -3") in err
    assert (f'{path}::$.search.enqueue[0]["training.max_steps"] ({_at(text, "3.0")}): an int '
            "range needs an integer (written without a decimal point or exponent), got 3.0") in err
    assert "6 problems" in err


def test_plugin_authors_build_components_under_the_same_rule(registry):
    from fturun.testing import build_component

    with pytest.raises(AssertionError, match="8.0 is not an integer|not of type 'integer'"):
        build_component(registry, "adapter", {"name": "lora", "params": {"r": 8.0}})


def test_every_schema_default_obeys_the_number_rule(registry):
    # a default is what a factory gets when the recipe leaves the key out: an integer field's
    # default must be an int too (the generated training schema and every component's params)
    from fturun.schema import compose_schema
    from fturun.schema.numbers import recipe_validator

    schema = compose_schema(registry)
    validator = recipe_validator(schema)
    checked, bad, stack = 0, [], [(schema, "#")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            if node.get("default") is not None:
                own = {k: v for k, v in node.items() if k != "default"}
                checked += 1
                bad += [(where, e.message) for e in
                        validator.evolve(schema=own).iter_errors(node["default"])]
            stack += [(v, f"{where}/{k}") for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, f"{where}/{i}") for i, v in enumerate(node)]
    assert checked > 100 and bad == []
    assert list(validator.evolve(schema={"type": "integer"}).iter_errors(16.0))  # it can fail


@pytest.mark.parametrize("override, message", [
    ("training.max_steps=99999999999999999999",
     "$.training.max_steps: must be <= 9223372036854775807, got 99999999999999999999"),
    ("seed=-9223372036854775809",
     "$.seed: must be >= -9223372036854775808, got -9223372036854775809"),
])
def test_integers_past_64_bits_are_refused_at_their_key(cli, override, message):
    """torch, numpy and the Trainer hold 64-bit integers: a larger one would overflow later."""
    assert message in _validate(cli, LORA, override)
    code, _, err = cli("validate", LORA, "--set", "seed=9223372036854775807")  # the largest
    assert code == 0, err
