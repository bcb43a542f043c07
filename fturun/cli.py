"""The ``fturun`` command line. Exit codes: 0 ok, 1 the run failed, 2 bad recipe or usage,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""

from __future__ import annotations

import time

#: when this process started running fturun (for "seconds to first step" figures)
PROCESS_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from .errors import FturunError, RecipeError, UsageError

EPILOG = """\
examples:
  fturun recipes/lora_cls.json                      train, evaluate, save, track in MLflow
  fturun recipes/lora_cls.json training.learning_rate=3e-4 data.max_train_samples=200
  fturun recipes/lora_cls.json --resume             continue from the latest checkpoint
  fturun check recipes/lora_cls.json                build everything, 2 steps, no tracking
  fturun search recipes/search_cls.json             hyperparameter search (Optuna, nested MLflow
                                                    runs); 'fturun RECIPE' does the same when the
                                                    recipe has a search section (--no-search: one
                                                    run with the recipe's own values)
  fturun launch --nproc 2 recipes/lora_cls.json     the same run in 2 processes (torchrun, DDP)
  fturun runs bbc-topics                            the experiment's runs in MLflow, newest first
  fturun rerun RUN_ID training.num_train_epochs=6   run a tracked run's recipe again, changed
  fturun validate recipes/*.json                    exit 0 when valid, 2 with every problem
  fturun components adapter                         what a recipe can name, with params
  fturun schema > recipe.schema.json                the schema for your editor

overrides are KEY=VALUE with a dotted KEY; VALUE is parsed as JSON, else taken as a string:
  callbacks.0.params.patience=2   training.report_to='["tensorboard"]'   tracking.enabled=false
"""

COMMANDS = ("run", "search", "check", "validate", "schema", "plugins", "components", "runs", "rerun",
            "launch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fturun",
        description="Fine-tune Hugging Face models from one JSON recipe: validated against the "
                    "installed plugins, run with the Trainer, tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fturun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def recipe_command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("recipe", metavar="RECIPE", help="recipe file (JSON)")
        p.add_argument("overrides", metavar="KEY=VALUE", nargs="*",
                       help="override recipe values, e.g. training.num_train_epochs=1")
        return p

    run = recipe_command("run", "train, evaluate and save as the recipe says (the default "
                                "command: 'fturun RECIPE' is 'fturun run RECIPE'); a recipe with "
                                "a 'search' section runs its study (see 'search')")
    run.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                     help="resume from the latest checkpoint in the output dir, or from "
                          "CHECKPOINT (a checkpoint folder)")
    run.add_argument("--no-search", action="store_true",
                     help="train once with the recipe's own values even when it has a 'search' "
                          "section (without it, such a recipe runs its study, as 'fturun search')")
    recipe_command("search", "hyperparameter search: run the Optuna study of the recipe's "
                             "'search' section, each trial a fresh build tracked as a nested "
                             "MLflow run; writes best_recipe.json next to the outputs. "
                             "search.storage shares one study between processes or machines")
    recipe_command("check", "start small: build every part, print the plan, run two optimizer "
                            "steps and one eval batch on a few examples, without tracking")
    validate = sub.add_parser("validate", help="validate recipes (exit 0 valid, 2 invalid)",
                              description="Validate recipes against the schema composed from "
                                          "the installed plugins; report every problem as "
                                          "FILE::$.json.path (line L, col C): message.")
    validate.add_argument("recipes", metavar="RECIPE", nargs="+")
    validate.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                          default=[], help="override applied before validation (repeatable)")
    sub.add_parser("schema", help="print the recipe JSON Schema (Draft 2020-12) composed from "
                                  "the installed plugins")
    sub.add_parser("plugins", help="list plugins as JSON: name, version, status, components")
    components = sub.add_parser("components", help="list components with descriptions and "
                                                   "params")
    components.add_argument("kind", nargs="?", metavar="KIND",
                            help="only this kind: dataset, model, adapter, collator, loss, "
                                 "metric, callback, optimizer, scheduler")
    components.add_argument("--json", action="store_true", help="machine-readable output")
    runs = sub.add_parser("runs", help="list MLflow runs of fturun recipes (name, status, "
                                       "metrics, recipe)")
    runs.add_argument("experiment", nargs="?", metavar="EXPERIMENT",
                      help="only this experiment (default: all)")
    runs.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else "
                                             "sqlite:///mlflow.db here")
    runs.add_argument("--max", type=int, default=20, help="at most this many runs (default 20)")
    rerun = sub.add_parser("rerun", help="fetch the recipe logged with an MLflow run and run it "
                                         "again (with overrides)")
    rerun.add_argument("run_id", metavar="RUN_ID")
    rerun.add_argument("overrides", metavar="KEY=VALUE", nargs="*")
    rerun.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else "
                                              "sqlite:///mlflow.db here")
    from .launch import add_arguments as add_launch_arguments

    add_launch_arguments(recipe_command(
        "launch", "validate, then run the recipe in N processes through torchrun (DDP, "
                  "DeepSpeed; several nodes with --nnodes/--node-rank/--master-addr)"))
    return parser


def main(argv=None) -> int:
    """Entry point of the ``fturun`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # overrides after --resume CHECKPOINT land here; anything else is a usage error
        if args.command in ("run", "search", "check", "rerun", "launch") and all(
                "=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    resume = getattr(args, "resume", None)
    if resume and resume != "latest" and "=" in resume and not os.path.exists(resume):
        args.overrides = list(args.overrides) + [resume]  # `--resume KEY=VALUE`: an override
        args.resume = "latest"
    if args.command is None:
        parser.print_help()
        return 2
    from .redaction import RedactingStream

    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        return COMMAND_FUNCTIONS[args.command](args)
    except FturunError as exc:
        print(f"error: {exc}" if not isinstance(exc, RecipeError) else str(exc),
              file=sys.stderr)
        if isinstance(exc, RecipeError):
            n = len(exc.problems)
            print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        sys.stdout, sys.stderr = streams


def _plugins():
    from .plugins import default_plugins

    loaded = default_plugins()
    loaded.warn_failures()
    return loaded


def load_valid_recipe(path, overrides, loaded=None):
    """Read and validate a recipe; raise :class:`RecipeError` with every problem."""
    from .recipe import load_recipe
    from .schema import validate_recipe

    loaded = loaded or _plugins()
    recipe = load_recipe(path, overrides)
    from .redaction import remember_recipe_secrets

    remember_recipe_secrets(recipe.data)
    problems = validate_recipe(recipe, loaded.registry)
    if problems:
        raise RecipeError(problems)
    return recipe, loaded


def cmd_validate(args) -> int:
    """Validate each recipe; every problem of every file is printed."""
    from .recipe import load_recipe
    from .schema import compose_schema, validate_recipe

    loaded = _plugins()
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
    from .schema import compose_schema

    print(json.dumps(compose_schema(_plugins().registry), indent=2, sort_keys=True))
    return 0


def cmd_plugins(args) -> int:
    """Print the plugins as JSON."""
    from .plugins import default_plugins

    print(json.dumps([p.as_json() for p in default_plugins().plugins], indent=2))
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
    from .registry import KINDS, PLURALS, suggest

    registry = _plugins().registry
    kinds = KINDS
    if args.kind:
        singular = {plural: kind for kind, plural in PLURALS.items()}
        kind = singular.get(args.kind, args.kind)
        if kind not in KINDS:
            raise UsageError(f"unknown kind '{args.kind}'{suggest(args.kind, KINDS)}; kinds: "
                             f"{', '.join(KINDS)}")
        kinds = (kind,)
    if args.json:
        print(json.dumps({kind: [
            {"name": c.name, "description": c.description, "plugin": c.plugin,
             "params": c.params_schema} for c in sorted(registry.components[kind].values(),
                                                        key=lambda c: c.name)]
            for kind in kinds}, indent=2))
        return 0
    for kind in kinds:
        print(f"{kind}s:")
        for component in sorted(registry.components[kind].values(), key=lambda c: c.name):
            print(f"  {component.name:<28} {component.description}  [{component.plugin}]")
            for line in _param_summary(component.params_schema):
                print(f"      {line}")
        print()
    return 0


def cmd_run(args) -> int:
    """Validate, then train/evaluate/save as the recipe says."""
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    if recipe.data.get("search") and not args.no_search:
        if args.resume:
            raise UsageError("--resume continues one run; a study continues through "
                             "search.storage (run the same command again), or train once with "
                             "--no-search --resume")
        from .search import run_search

        return run_search(recipe, loaded.registry)
    from .runner import run_recipe

    return run_recipe(recipe, loaded.registry, resume=args.resume)


def cmd_search(args) -> int:
    """Validate, then run the recipe's hyperparameter search."""
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    if not recipe.data.get("search"):
        raise UsageError(f"{args.recipe} has no 'search' section: add one with a 'space' "
                         "(README, 'Hyperparameter search'), or train it with 'fturun run'")
    from .search import run_search

    return run_search(recipe, loaded.registry)


def cmd_check(args) -> int:
    """Validate, then build everything and run a couple of steps on a handful of examples."""
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    from .runner import check_recipe

    return check_recipe(recipe, loaded.registry)


def _client(uri):
    from .tracking import check_reachable, default_tracking_uri

    uri = uri or default_tracking_uri()
    check_reachable(uri)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri), uri


def cmd_runs(args) -> int:
    """List runs: newest first, with their final eval metrics and recipe."""
    client, uri = _client(args.tracking_uri)
    if args.experiment:
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            names = [e.name for e in client.search_experiments()]
            from .registry import suggest

            raise UsageError(f"no experiment '{args.experiment}' at {uri}"
                             f"{suggest(args.experiment, names)}; experiments: "
                             f"{', '.join(names) or 'none'}")
        experiments = [experiment]
    else:
        experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments],
                              filter_string="tags.`fturun.version` != ''",
                              order_by=["attributes.start_time DESC"], max_results=args.max)
    names = {e.experiment_id: e.name for e in experiments}
    if not runs:
        print(f"no fturun runs at {uri}")
        return 0
    print(f"{'run id':<32}  {'experiment':<16} {'name':<22} {'status':<9} metrics / recipe")
    for run in runs:
        metrics = {k: v for k, v in run.data.metrics.items()
                   if k.startswith(("eval_", "test_")) and not k.endswith(
                       ("runtime", "per_second", "epoch"))}
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())[:4])
        recipe = run.data.tags.get("fturun.recipe_path", "")
        print(f"{run.info.run_id:<32}  {names.get(run.info.experiment_id, '?')[:16]:<16} "
              f"{(run.info.run_name or '')[:22]:<22} {run.info.status:<9} {shown}  {recipe}")
    return 0


def cmd_rerun(args) -> int:
    """Download the resolved recipe of a run and run it again."""
    import os
    import tempfile

    client, uri = _client(args.tracking_uri)
    try:
        run = client.get_run(args.run_id)
    except Exception as exc:  # mlflow raises its own exception types per store
        raise UsageError(f"no run '{args.run_id}' at {uri}: {exc}") from None
    folder = tempfile.mkdtemp(prefix="fturun-rerun-")
    try:
        path = client.download_artifacts(args.run_id, "recipe/resolved.json", folder)
    except Exception:
        raise UsageError(f"run '{args.run_id}' has no recipe/resolved.json artifact: it was "
                         "not made by fturun") from None
    original = run.data.tags.get("fturun.recipe_path")
    name = os.path.basename(original) if original else "rerun.json"
    named = os.path.join(folder, name)
    os.replace(path, named)
    recipe, loaded = load_valid_recipe(named, args.overrides)
    if original:
        recipe.base_dir = os.path.dirname(original)  # relative data paths as in the original
    tracking = recipe.data.setdefault("tracking", {})
    tracking.setdefault("tracking_uri", uri)
    tags = tracking.setdefault("tags", {})
    tags["fturun.rerun_of"] = args.run_id
    from .runner import run_recipe

    return run_recipe(recipe, loaded.registry, resume=None)


COMMAND_FUNCTIONS = {
    "runs": cmd_runs,
    "rerun": cmd_rerun,
    "run": cmd_run,
    "search": cmd_search,
    "check": cmd_check,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "plugins": cmd_plugins,
    "components": cmd_components,
    "launch": lambda args: __import__("fturun.launch", fromlist=["cmd_launch"]).cmd_launch(args),
}
