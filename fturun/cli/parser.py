"""The ``fturun`` argument parser: one subcommand per command, each with its help."""

from __future__ import annotations

import argparse

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

COMMANDS = ("run", "search", "check", "validate", "schema", "plugins", "components", "runs",
            "rerun", "launch")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``fturun`` command."""
    from .. import __version__
    from .launch import add_arguments as add_launch_arguments

    parser = argparse.ArgumentParser(
        prog="fturun",
        description="Fine-tune Hugging Face models from one JSON recipe: validated against the "
                    "installed plugins, run with the Trainer, tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fturun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_commands(sub)
    _add_inspection_commands(sub)
    _add_tracking_commands(sub)
    add_launch_arguments(_recipe_command(
        sub, "launch", "validate, then run the recipe in N processes through torchrun (DDP, "
                       "DeepSpeed; several nodes with --nnodes/--node-rank/--master-addr)"))
    return parser


def _recipe_command(sub, name, help_text):
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE", help="recipe file (JSON)")
    p.add_argument("overrides", metavar="KEY=VALUE", nargs="*",
                   help="override recipe values, e.g. training.num_train_epochs=1")
    return p


def _add_run_commands(sub) -> None:
    run = _recipe_command(sub, "run", "train, evaluate and save as the recipe says (the default "
                                      "command: 'fturun RECIPE' is 'fturun run RECIPE'); a "
                                      "recipe with a 'search' section runs its study (see "
                                      "'search')")
    run.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                     help="resume from the latest checkpoint in the output dir, or from "
                          "CHECKPOINT (a checkpoint folder)")
    run.add_argument("--no-search", action="store_true",
                     help="train once with the recipe's own values even when it has a 'search' "
                          "section (without it, such a recipe runs its study, as 'fturun search')")
    _recipe_command(sub, "search", "hyperparameter search: run the Optuna study of the recipe's "
                                   "'search' section, each trial a fresh build tracked as a "
                                   "nested MLflow run; writes best_recipe.json next to the "
                                   "outputs. search.storage shares one study between processes "
                                   "or machines")
    _recipe_command(sub, "check", "start small: build every part, print the plan, run two "
                                  "optimizer steps and one eval batch on a few examples, without "
                                  "tracking")


def _add_inspection_commands(sub) -> None:
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


def _add_tracking_commands(sub) -> None:
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
