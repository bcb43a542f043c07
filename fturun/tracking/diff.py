"""``fturun diff A B``: what differs between two runs, two recipes, or a recipe and a run.

Each side is read into a :class:`Side`: the resolved recipe (a run's ``recipe/resolved.json``;
a recipe file loaded with its ``extends``), the command line's overrides, the data (a run's
dataset inputs: digest and rows per split), the environment (package versions, Python and
platform, fturun's version, git commit, the engine: a run's ``environment.json`` and tags;
a recipe: this machine's) and the final eval/test metrics. :func:`diff_sides` compares them:
the recipes as dotted keys (``training.learning_rate: 0.002 -> 0.001``), the keys that only say
where a run wrote and how it was tracked (``training.output_dir``, ``tracking.*``) apart, and
the metrics side by side with their deltas.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field

from ..core.errors import UsageError
from .queries import fetch_run_recipe, result_metrics

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: keys that say where a run wrote and how it was tracked, not what it trained
BOOKKEEPING = ("training.output_dir", "tracking.", "training.logging_dir", "description")
ENGINE_TAGS = ("fturun.version", "fturun.git_commit", "fturun.git_dirty", "fturun.engine.")


@dataclass
class Side:
    """One side of a diff."""

    label: str  # the run id or recipe path
    kind: str  # "run" or "recipe"
    recipe: dict
    overrides: str = ""
    data: dict = field(default_factory=dict)  # split -> {"name", "digest", "rows"}
    environment: dict = field(default_factory=dict)  # dotted key -> value
    metrics: dict = field(default_factory=dict)


def read_side(ref: str, client_for) -> Side:
    """A run id (``client_for()`` gives ``(client, uri)``) or a recipe file."""
    if os.path.isfile(ref):
        return _recipe_side(ref)
    if RUN_ID.match(ref):
        return _run_side(ref, *client_for())
    raise UsageError(f"'{ref}' is neither a recipe file nor a run id (32 hex digits, 'fturun "
                     "runs' lists them): fturun diff compares two of them")


def _recipe_side(path: str) -> Side:
    from .. import __version__
    from ..recipe.load import load_recipe
    from .params import environment, git_info

    recipe = load_recipe(path)
    env = _flat_environment(environment())
    env["fturun.version"] = __version__
    env.update({k: v for k, v in git_info(path).items() if k.startswith("fturun.")})
    return Side(path, "recipe", recipe.data, environment=env)


def _run_side(run_id: str, client, uri: str) -> Side:
    with tempfile.TemporaryDirectory(prefix="fturun-diff-") as folder:
        path, _ = fetch_run_recipe(client, run_id, folder)
        with open(path, encoding="utf-8") as f:
            recipe = json.load(f)
        try:
            with open(client.download_artifacts(run_id, "environment.json", folder),
                      encoding="utf-8") as f:
                env = _flat_environment(json.load(f))
        except Exception:  # noqa: BLE001 - an older run without it: its tags still say
            env = {}
    run = client.get_run(run_id)
    tags = run.data.tags
    env.update({key: value for key, value in tags.items() if key.startswith(ENGINE_TAGS)})
    for key in ("fturun.git_commit", "fturun.git_dirty"):  # a rerun's recipe: the original's
        if key not in env and tags.get(f"fturun.rerun_of.{key.rsplit('.', 1)[1]}"):
            env[key] = tags[f"fturun.rerun_of.{key.rsplit('.', 1)[1]}"]
    data = {}
    for item in (run.inputs.dataset_inputs if run.inputs else []):
        split = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "?")
        profile = json.loads(item.dataset.profile or "{}")
        data[f"{split}:{item.dataset.name}"] = {"digest": item.dataset.digest,
                                                "rows": profile.get("num_rows")}
    return Side(run_id, "run", recipe, overrides=run.data.tags.get("fturun.overrides", ""),
                data=data, environment=env, metrics=result_metrics(run.data.metrics))


def _flat_environment(env: dict) -> dict:
    flat = {f"packages.{k}": v for k, v in (env.get("packages") or {}).items()}
    flat.update({k: env[k] for k in ("python", "platform") if k in env})
    return flat


def dotted(value, prefix: str = "") -> dict:
    """``{"a": {"b": [1]}}`` -> ``{"a.b.0": 1}``; an empty object or list is a value."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value} if prefix else {}
    out = {}
    for key, item in items:
        out.update(dotted(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changes(a: dict, b: dict) -> list:
    """``[{"key", "a", "b"}]`` of the keys whose values differ (a missing key: absent)."""
    return [{"key": k, "a": a.get(k, ABSENT), "b": b.get(k, ABSENT)}
            for k in sorted(set(a) | set(b)) if a.get(k, ABSENT) != b.get(k, ABSENT)]


ABSENT = "(not set)"


def diff_sides(a: Side, b: Side) -> dict:
    """The differences of two sides (see the module docstring), as JSON-ready data."""
    recipe = changes(dotted(a.recipe), dotted(b.recipe))
    bookkeeping = [c for c in recipe if c["key"].startswith(BOOKKEEPING)]
    metrics = []
    for key in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        delta = vb - va if va is not None and vb is not None else None
        metrics.append({"metric": key, "a": va, "b": vb, "delta": delta})
    return {"a": {"label": a.label, "kind": a.kind}, "b": {"label": b.label, "kind": b.kind},
            "recipe": [c for c in recipe if c not in bookkeeping],
            "bookkeeping": bookkeeping,
            "overrides": {"a": a.overrides, "b": b.overrides},
            "data": changes(a.data, b.data) if a.kind == b.kind == "run" else [],
            "environment": _environment_changes(a, b),
            "metrics": metrics}


def _environment_changes(a: Side, b: Side) -> list:
    """The environments' differences; between a recipe (this machine) and a run, only of
    what both record (a recipe has no engine yet)."""
    found = changes(a.environment, b.environment)
    if a.kind == b.kind:
        return found
    return [c for c in found if ABSENT not in (c["a"], c["b"])]


def show(value) -> str:
    """A value as the diff prints it (JSON, strings bare)."""
    return value if isinstance(value, str) else json.dumps(value)


def diff_lines(result: dict) -> list:
    """The diff as text lines."""
    lines = [f"A: {result['a']['kind']} {result['a']['label']}",
             f"B: {result['b']['kind']} {result['b']['label']}", ""]
    sections = (("recipe", "recipe"), ("bookkeeping", "where it wrote and how it was tracked"),
                ("data", "data (digest, rows)"), ("environment", "environment"))
    for key, title in sections:
        lines.append(f"{title}:" + ("" if result[key] else " no differences"))
        lines += [f"  {c['key']}: {show(c['a'])} -> {show(c['b'])}" for c in result[key]]
    overrides = result["overrides"]
    if overrides["a"] or overrides["b"]:
        lines += ["overrides:", f"  A: {overrides['a'] or '(none)'}",
                  f"  B: {overrides['b'] or '(none)'}"]
    if result["metrics"]:
        lines.append("final metrics (A, B, B - A):")
        for m in result["metrics"]:
            cells = [_number(m["a"]), _number(m["b"]),
                     f"{m['delta']:+.4g}" if m["delta"] is not None else "-"]
            lines.append(f"  {m['metric']:<28} " + "  ".join(f"{c:>10}" for c in cells))
    return lines


def _number(value) -> str:
    return f"{value:.4g}" if value is not None else "-"

