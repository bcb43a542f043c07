"""The commands that validate, inspect and run recipes: arguments in, exit codes out."""

from __future__ import annotations

import json
import sys

from ..core.errors import RecipeError, UsageError
from .common import load_plugins_warned, load_valid_recipe


def cmd_validate(args) -> int:
    """Validate each recipe; every problem of every file is printed."""
    from ..recipe.load import load_recipe
    from ..schema import compose_schema, validate_recipe

    loaded = load_plugins_warned()
    schema = compose_schema(loaded.registry)
    status = 0
    for path in args.recipes:
        try:
            recipe = load_recipe(path, args.overrides)
            problems = validate_recipe(recipe, loaded.registry, schema)
        except RecipeError as exc:
            problems = exc.problems
        if problems:
            status = 2
            for problem in problems:
                print(problem, file=sys.stderr)
            n = len(problems)
            print(f"{path}: invalid ({n} problem{'s' if n != 1 else ''})", file=sys.stderr)
        else:
            print(f"{path}: valid")
    return status


def cmd_schema(args) -> int:
    """Print the composed schema."""
    from ..schema import compose_schema

    print(json.dumps(compose_schema(load_plugins_warned().registry), indent=2, sort_keys=True))
    return 0


def cmd_plugins(args) -> int:
    """Print the plugins as JSON (what did not load, or an unknown disabled name, is also
    warned about on stderr), and each argument schema generated from an installed library
    (``schemas``: the versions it was generated from, the installed ones, its source)."""
    from ..plugin.manager import plugins_report
    from ..schema import training_schema
    from ..schema.installed import schema_sources

    report = plugins_report(load_plugins_warned())
    training_schema()  # the plugins' own (a task's training_settings) loaded with them
    print(json.dumps({**report, "schemas": schema_sources()}, indent=2))
    return 0


def _param_summary(schema: dict) -> list:
    required = set(schema.get("required", []))
    lines = []
    for key, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or ("enum" if "enum" in prop else "any")
        if "enum" in prop:
            kind = "|".join(str(v) for v in prop["enum"][:6]) + ("|..." if len(prop["enum"]) > 6
                                                                 else "")
        elif "anyOf" in prop:
            kind = " or ".join(str(s.get("type", s.get("const", "?"))) for s in prop["anyOf"])
        if isinstance(kind, list):
            kind = " or ".join(kind)
        text = f"{key} ({kind}"
        if key in required:
            text += ", required"
        if "default" in prop:
            text += f", default {json.dumps(prop['default'])}"
        text += ")"
        if prop.get("description"):
            text += f": {prop['description']}"
        lines.append(text)
    return lines


def cmd_components(args) -> int:
    """List components (of one kind) with descriptions and params."""
    from ..core.suggest import suggest
    from ..plugin.registry import KINDS, PLURALS

    registry = load_plugins_warned().registry
    kinds = KINDS
    if args.kind:
        singular = {plural: kind for kind, plural in PLURALS.items()}
        kind = singular.get(args.kind, args.kind)
        if kind in ("task", "tasks"):
            return _list_tasks(registry, args.json)
        if kind not in KINDS:
            known = (*KINDS, "task")
            raise UsageError(f"unknown kind '{args.kind}'{suggest(args.kind, known)}; kinds: "
                             f"{', '.join(known)}")
        kinds = (kind,)
    if args.json:
        print(json.dumps({kind: [
            {"name": c.name, "description": c.description, "plugin": c.plugin,
             "params": c.params_schema} for c in sorted(registry.components[kind].values(),
                                                        key=lambda c: c.name)]
            for kind in kinds}, indent=2))
        return 0
    for kind in kinds:
        print(f"{PLURALS[kind]}:")
        for component in sorted(registry.components[kind].values(), key=lambda c: c.name):
            print(f"  {component.name:<28} {component.description}  [{component.plugin}]")
            for line in _param_summary(component.params_schema):
                print(f"      {line}")
        print()
    return 0


def _list_tasks(registry, as_json: bool) -> int:
    """``fturun components task``: each task a recipe's ``task`` can name, with its plugin,
    model class and default metrics."""
    tasks = sorted(registry.tasks.values(), key=lambda t: t.name)
    if as_json:
        print(json.dumps({"task": [
            {"name": t.name, "description": t.description, "plugin": registry.task_plugins.get(
                t.name), "model_class": t.model_class,
             "default_metrics": [m if isinstance(m, str) else m.get("name")
                                 for m in t.default_metrics]} for t in tasks]}, indent=2))
        return 0
    print("tasks:")
    for task in tasks:
        print(f"  {task.name:<28} {task.description}  [{registry.task_plugins.get(task.name)}]")
        print(f"      model class {task.model_class}" + (
            "; default metrics " + ", ".join(m if isinstance(m, str) else m.get("name", "?")
                                             for m in task.default_metrics)
            if task.default_metrics else ""))
    return 0


def cmd_run(args) -> int:
    """Validate, then train/evaluate/save as the recipe says."""
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in the output folder and --overwrite "
                         "replaces it: give one of them")
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    if recipe.data.get("search") and not args.no_search:
        if args.resume:
            raise UsageError("--resume continues one run; a study continues through "
                             "search.storage (run the same command again), or train once with "
                             "--no-search --resume")
        from ..search import run_search

        return run_search(recipe, loaded.registry, overwrite=args.overwrite)
    from ..run.session import run_recipe

    return run_recipe(recipe, loaded.registry, resume=args.resume, overwrite=args.overwrite)


def cmd_search(args) -> int:
    """Validate, then run the recipe's hyperparameter search."""
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    if not recipe.data.get("search"):
        raise UsageError(f"{args.recipe} has no 'search' section: add one with a 'space' "
                         "(README, 'Hyperparameter search'), or train it with 'fturun run'")
    from ..search import run_search

    return run_search(recipe, loaded.registry, overwrite=args.overwrite)


def cmd_check(args) -> int:
    """Validate, then build everything and run a couple of steps on a handful of examples."""
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    from ..run.session import check_recipe

    return check_recipe(recipe, loaded.registry, show_batch=args.show_batch or 0)
