"""Property-based tests: whatever the recipe or override, `fturun validate` ends with exit 0 or 2,
never a traceback, and within a second."""

import contextlib
import io
import json
import time

from helpers import RECIPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fturun.cli import main
from fturun.plugin import manager as plugins

BASE = json.loads((RECIPES / "lora_cls.json").read_text())
KEYS = ["data", "train", "model", "params", "path", "training", "learning_rate", "name",
        "metrics", "adapter", "r", "split", "eval", "callbacks", "extends", "$schema", "seed",
        "per_device_train_batch_size", "tracking", "lora", "accuracy", "", "0", "é", "a.b"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats()  # NaN, Infinity too
    | st.text(max_size=20) | st.sampled_from(KEYS),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_recipes(draw):
    """The demo recipe with a few keys dropped, retyped, renamed or nested."""
    data = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            key = path[-1]
            parent[key]  # noqa: B018 - the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["drop", "retype", "rename", "nest"]))
        if action == "drop":
            del parent[key]
        elif action == "retype":
            parent[key] = draw(json_values)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(key)
        elif action == "nest":
            parent[key] = {"name": parent[key], "params": {"x": [parent[key]]}}
    return data


def _validate(tmp_path, text, *overrides):
    path = tmp_path / "r.json"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    plugins._DEFAULT = plugins._DEFAULT or plugins.load_plugins()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        args = ["validate", str(path)]
        for override in overrides:
            args += ["--set", override]
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own usage errors exit 2 too
            code = exc.code
    elapsed = time.monotonic() - start
    assert code in (0, 2), (code, text, err.getvalue())
    assert "Traceback" not in err.getvalue()
    assert elapsed < 1.0, (elapsed, text[:200])
    if code == 2:
        assert err.getvalue().strip()
    return code, err.getvalue()


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(mutated_recipes())
def test_mutated_recipes(tmp_path, data):
    _validate(tmp_path, json.dumps(data))


@FUZZ
@given(json_values)
def test_arbitrary_json(tmp_path, value):
    _validate(tmp_path, json.dumps(value))


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(tmp_path, text):
    _validate(tmp_path, text)


@FUZZ
@given(st.lists(st.text(max_size=30) | st.builds(
    lambda k, v: f"{k}={v}", st.sampled_from(
        ["training.learning_rate", "metrics.0", "metrics.5.params", "data.train.params.path",
         "callbacks.0.params.patience", "adapter", "a..b", ".x", "seed.y", "model.params"]),
    st.text(max_size=20) | st.sampled_from(['{"name": "lora"}', "[1,2]", "null", "3e-5", "1e999",
                                            "NaN", "16.0", '{"a": 1, "a": 2}', "[1e-999]"])),
    max_size=3))
def test_arbitrary_overrides(tmp_path, overrides):
    overrides = overrides + ["-x"] if overrides and overrides[0].startswith("-") else overrides
    _validate(tmp_path, json.dumps(BASE), *overrides)


#: number literals Python's json would read as something else (inf, nan, 0) or as a float where
#: an integer is expected
ODD_NUMBERS = ["1e999", "-1e999", "1e-999", "NaN", "Infinity", "-Infinity", "16.0", "1e3",
               "9" * 400, "-0.0"]


@st.composite
def odd_recipe_texts(draw):
    """A mutated recipe written out with some numbers replaced by odd literals and some keys
    written twice; returns ``(text, wrote a duplicate or a number without a double)``."""
    refused = []

    def write(node):
        if isinstance(node, dict):
            items = [f"{json.dumps(k)}: {write(v)}" for k, v in node.items()]
            if items and draw(st.integers(0, 5)) == 0:
                items.append(draw(st.sampled_from(items)))  # a key written twice
                refused.append("duplicate key")
            return "{" + ", ".join(items) + "}"
        if isinstance(node, list):
            return "[" + ", ".join(write(v) for v in node) + "]"
        if isinstance(node, (int, float)) and not isinstance(node, bool) and \
                draw(st.integers(0, 2)) == 0:
            literal = draw(st.sampled_from(ODD_NUMBERS))
            if literal not in ("16.0", "1e3", "-0.0"):
                refused.append(literal)
            return literal
        return json.dumps(node)

    return write(draw(mutated_recipes())), refused


@FUZZ
@given(odd_recipe_texts())
def test_odd_numbers_and_duplicate_keys(tmp_path, case):
    text, refused = case
    code, err = _validate(tmp_path, text)
    if refused:  # each one reported, located (a copied key repeats what it holds)
        assert code == 2, (text, refused)
        located = [line for line in err.splitlines() if "::$" in line and "(line " in line]
        assert len(located) >= len(refused), (refused, err)
        for what in refused:
            assert (what if len(what) <= 24 else f"({len(what)} characters)") in err
