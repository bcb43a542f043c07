"""The ``fturun`` argument parser: one subcommand per command, each with its description, help
for every argument and its own examples."""

from __future__ import annotations

import argparse
import textwrap

from . import after, data, plan, promote
from .common import whole_number
from .filters import add_runs_arguments

EPILOG = """\
examples:
  fturun recipes/lora_cls.json                      train, evaluate, save, track in MLflow
  fturun recipes/lora_cls.json training.learning_rate=3e-4 data.max_train_samples=200
  fturun recipes/lora_cls.json --resume             continue from the latest checkpoint
  fturun check recipes/lora_cls.json                build everything, 2 steps, no tracking
  fturun data recipes/lora_cls.json                 the data: lengths, truncation, duplicates
  fturun plan recipes/lora_cls.json --gpu rtx4090   will it fit, how long, before any weight
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
  fturun evaluate RECIPE --model models:/NAME@champion    score a trained model on the data
  fturun predict REF rows.csv                       one JSON line of prediction per row
  fturun chat REF                                   talk to a chat model you trained
  fturun diff RUN_A RUN_B                           what differs: recipe, data, env, metrics
  fturun explain RECIPE training.learning_rate      where a value comes from

'fturun COMMAND --help' shows a command's options and examples; -v (--verbose) shows every
library message (by default fturun keeps the ones that say nothing you can act on off the
console).

""" + "{overrides}"

OVERRIDES = """\
overrides: KEY=VALUE (or --set KEY=VALUE) with a dotted KEY, applied before validation; VALUE
is parsed as JSON, else taken as a string. Every command that reads a recipe takes them:
  training.max_steps=5   callbacks.0.params.patience=2   'metrics=["accuracy"]'
  training.report_to='["tensorboard"]'   tracking.enabled=false
"""

COMMANDS = ("run", "search", "check", "plan", "data", "validate", "schema", "plugins",
            "components", "runs", "rerun", "promote", "launch")

#: the commands that read a recipe, so take overrides
RECIPE_COMMANDS = ("run", "search", "check", "plan", "data", "validate", "rerun", "launch")

#: each command: (one line for the command list, description, examples)
HELP = {
    "run": (
        "train, evaluate and save as the recipe says (the default command)",
        "Validate the recipe, build every part, train, evaluate (and predict on a test split), "
        "save the model and track the run in MLflow. 'fturun RECIPE' is 'fturun run RECIPE'. A "
        "recipe with a 'search' section runs its study (see 'fturun search --help').",
        """\
  fturun recipes/lora_cls.json                        train, evaluate, save, track in MLflow
  fturun run recipes/lora_cls.json training.learning_rate=3e-4 data.max_train_samples=200
  fturun recipes/lora_cls.json --set training.num_train_epochs=1    the same with --set
  fturun recipes/lora_cls.json tracking.enabled=false          no MLflow run
  fturun recipes/lora_cls.json --resume               continue from the latest checkpoint
  fturun recipes/lora_cls.json --resume outputs/lora_cls/checkpoint-50
  fturun recipes/search_cls.json --no-search          train once with the recipe's own values
"""),
    "search": (
        "hyperparameter search over the recipe's 'search' space (Optuna)",
        "Run the Optuna study of the recipe's 'search' section: each trial is a fresh build "
        "tracked as a nested MLflow run; best_params.json and best_recipe.json are written next "
        "to the outputs. search.storage shares one study between processes or machines (run "
        "the same command in each).",
        """\
  fturun search recipes/search_cls.json               the study as the recipe says
  fturun search recipes/search_cls.json search.n_trials=20 training.max_steps=50
  fturun search recipes/search_cls.json search.storage=sqlite:///study.db   resumable
"""),
    "check": (
        "start small: build everything, print the plan, run 2 steps",
        "Build every part on a few examples, print the plan of the real run (data sizes, "
        "labels, model, parameters, steps, a time estimate), then run two optimizer steps and "
        "one eval batch in a temporary folder, without tracking: the quick way to find a wrong "
        "module name or column before a long run.",
        """\
  fturun check recipes/lora_cls.json                  the plan and two steps
  fturun check recipes/lora_cls.json data.max_length=256 training.per_device_train_batch_size=8
  fturun check recipes/sft_chat.json --show-batch 4    what the model is trained on
"""),
    "validate": (
        "validate recipes only (exit 0 valid, 2 invalid)",
        "Validate recipes against the schema composed from the installed plugins, without "
        "loading any model or data; report every problem at once, each located as "
        "FILE::$.json.path (line L, col C): message (an override's problem is located at the "
        "override).",
        """\
  fturun validate recipes/*.json                      every recipe, every problem
  fturun validate recipes/lora_cls.json training.max_steps=5    with an override
  fturun validate recipes/lora_cls.json --set adapter.params.r=4
"""),
    "schema": (
        "print the recipe JSON Schema (Draft 2020-12)",
        "Print the recipe JSON Schema (Draft 2020-12) composed from the installed plugins' "
        "components: point a recipe's \"$schema\" at it for completion and checking in an "
        "editor.",
        """\
  fturun schema > recipe.schema.json                  the schema for your editor
"""),
    "plugins": (
        "list plugins as JSON: name, version, status, components",
        "List the plugins as JSON: fturun's built-ins and every installed 'fturun' entry point, "
        "each with its version, status (ok, failed with the reason, or disabled by "
        "FTURUN_DISABLE_PLUGINS=a,b) and the components it registers.",
        """\
  fturun plugins                                      every plugin
  FTURUN_DISABLE_PLUGINS=builtin.losses fturun plugins    one plugin disabled
"""),
    "components": (
        "list what a recipe can name, with descriptions and params",
        "List the registered components (datasets, models, adapters, collators, losses, "
        "metrics, callbacks, optimizers, schedulers) with their descriptions and params: "
        "type, default, whether required.",
        """\
  fturun components                                   every kind
  fturun components adapter                           the adapters and their params
  fturun components loss --json                       machine-readable
  fturun components task                              the tasks, their model class and metrics
"""),
    "runs": (
        "list fturun's MLflow runs, newest first",
        "List the MLflow runs made by fturun, newest first, fitted to 100 columns: short run "
        "id, start (UTC), user, status, the metric its versions are promoted on (a search's "
        "parent run: its best value), registered versions with their aliases, recipe and "
        "overrides. --wide shows every field in full; --json prints every field for scripts.",
        """\
  fturun runs                                         every experiment
  fturun runs bbc-topics --max 5                      one experiment, the 5 newest runs
  fturun runs --mine --status failed --since 7d       my failed runs of the last week
  fturun runs --wide                                  full ids, experiment, every metric
  fturun runs --tracking-uri http://mlflow:5000 --json
"""),
    "rerun": (
        "run a tracked run's recipe again (with overrides)",
        "Fetch the resolved recipe logged with an MLflow run (recipe/resolved.json) and run it "
        "again, with overrides; the new run is tagged fturun.rerun_of and tracked on the same "
        "server unless the recipe says otherwise.",
        """\
  fturun rerun 294d767e03384a57a69629546b8219ec       the same run again
  fturun rerun 294d767e03384a57a69629546b8219ec training.num_train_epochs=6
"""),
    "launch": (
        "validate, then run the recipe in N processes (torchrun)",
        "Validate the recipe once (exit 2 before any process starts), then exec torchrun "
        "running 'fturun run' in N processes: DDP, or DeepSpeed with a 'deepspeed' section; "
        "several machines with --nnodes, --node-rank and --master-addr.",
        """\
  fturun launch --nproc 2 recipes/lora_cls.json       2 processes on this machine
  fturun launch --nproc 2 recipes/ds_zero2_cls.json training.max_steps=20
  fturun launch --nproc 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 recipes/lora_cls.json
  fturun launch --nproc 2 recipes/lora_cls.json --print    show the torchrun command only
"""),
}


HELP["promote"] = promote.HELP
HELP["data"] = data.HELP
HELP["plan"] = plan.HELP

# after training: evaluate, predict, chat, diff, explain (their help and arguments: cli/after.py)
COMMANDS += after.COMMANDS
RECIPE_COMMANDS += after.RECIPE_COMMANDS
HELP.update(after.HELP)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``fturun`` command."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="fturun",
        description="Fine-tune Hugging Face models from one JSON recipe: validated against the "
                    "installed plugins, run with the Trainer, tracked in MLflow.",
        epilog=EPILOG.format(overrides=OVERRIDES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fturun {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every library message (warnings, load reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {name: _command(sub, name) for name in COMMANDS}
    _add_run_arguments(commands)
    _add_inspection_arguments(commands)
    _add_tracking_arguments(commands)
    after.add_arguments(commands, add_overrides)
    return parser


def _command(sub, name):
    """A subcommand with its description, examples and the options every command has."""
    line, description, examples = HELP[name]
    epilog = "examples:\n" + examples
    if name in RECIPE_COMMANDS:
        epilog += "\n" + OVERRIDES
    p = sub.add_parser(name, help=line, description=textwrap.fill(description, 92), epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show every library message (warnings, load reports)")
    return p


def add_overrides(p, recipe_help: str = "recipe file (JSON)") -> None:
    """The recipe and its overrides, as every recipe command takes them: ``KEY=VALUE`` after
    the recipe, or ``--set KEY=VALUE`` anywhere."""
    if recipe_help:
        p.add_argument("recipe", metavar="RECIPE", help=recipe_help)
    group = p.add_argument_group("overrides (optional, any number)")
    group.add_argument("overrides", metavar="KEY=VALUE", nargs="*", default=[],
                       help="set a recipe value before validation, e.g. training.max_steps=5")
    group.add_argument("--set", dest="set_overrides", metavar="KEY=VALUE", action="append",
                       default=[], help="the same, as an option (repeatable)")


def add_overwrite(p) -> None:
    """``--overwrite``: a fresh run may replace another run's outputs in its folder."""
    p.add_argument("--overwrite", action="store_true",
                   help="replace another run's model and checkpoints in the output dir "
                        "(refused without it); the old model is replaced only once the new "
                        "one is saved. The same as output.overwrite=true")


def add_resume(p) -> None:
    """``--resume [CHECKPOINT]``: continue a run from a checkpoint of its folder."""
    p.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="resume from the latest checkpoint in the output dir, or from "
                        "CHECKPOINT (a checkpoint folder)")


def _add_run_arguments(commands) -> None:
    from .launch import add_arguments as add_launch_arguments

    run = commands["run"]
    add_overrides(run)
    add_resume(run)
    run.add_argument("--no-search", action="store_true",
                     help="train once with the recipe's own values even when it has a 'search' "
                          "section (without it, such a recipe runs its study, as 'fturun search')")
    add_overwrite(run)
    add_overrides(commands["search"], "recipe file (JSON) with a 'search' section")
    add_overwrite(commands["search"])
    add_overrides(commands["check"])
    commands["check"].add_argument(
        "--show-batch", type=whole_number(1), metavar="N",
        help="print the first N training examples as the collator makes them, the trained "
             "tokens (those with a label) marked [[...]], and write them to "
             "OUTPUT_DIR/check_batch.jsonl (tokens, trained)")
    add_overrides(commands["data"])
    data.add_arguments(commands["data"])
    add_overrides(commands["launch"])
    add_launch_arguments(commands["launch"])
    plan.add_arguments(commands["plan"], add_overrides, whole_number(1))
    add_resume(commands["launch"])  # passed on to each process's `fturun run`
    add_overwrite(commands["launch"])


def _add_inspection_arguments(commands) -> None:
    validate = commands["validate"]
    validate.usage = "fturun validate [-h] [-v] [--set KEY=VALUE] RECIPE... [KEY=VALUE ...]"
    validate.add_argument("recipes", metavar="RECIPE", nargs="+",
                          help="recipe files (JSON); KEY=VALUE items among them are overrides, "
                               "applied to each recipe")
    group = validate.add_argument_group("overrides (optional, any number)")
    group.add_argument("--set", dest="set_overrides", metavar="KEY=VALUE", action="append",
                       default=[], help="set a recipe value before validation (repeatable); "
                                        "KEY=VALUE after the recipes does the same")
    commands["components"].add_argument(
        "kind", nargs="?", metavar="KIND",
        help="only this kind: dataset, model, adapter, collator, loss, metric, callback, "
             "optimizer, scheduler, or task (the tasks a recipe's 'task' names; plurals "
             "accepted; default: every component kind)")
    commands["components"].add_argument("--json", action="store_true",
                                        help="machine-readable output")


def _add_tracking_arguments(commands) -> None:
    uri_help = "the MLflow tracking server (default: $MLFLOW_TRACKING_URI, else " \
               "sqlite:///mlflow.db here)"
    add_runs_arguments(commands["runs"], uri_help)
    rerun = commands["rerun"]
    rerun.add_argument("run_id", metavar="RUN_ID",
                       help="the MLflow run id ('fturun runs' lists them)")
    add_overrides(rerun, recipe_help="")
    rerun.add_argument("--tracking-uri", metavar="URI", help=uri_help)
    add_overwrite(rerun)
    promote.add_arguments(commands["promote"])
