"""The ``fturun`` command line. Exit codes: 0 ok, 1 the run failed, 2 bad recipe or usage,
75 the output folder is in use by another run (:data:`fturun.run.lock.EXIT_LOCKED`), 130
interrupted (Ctrl-C), 143 terminated (SIGTERM)."""

from __future__ import annotations

import os
import re
import sys

from ..core.errors import FturunError, RecipeError, UsageError, environment_fault
from . import after, commands, data, launch, plan, promote, runs
from .parser import COMMANDS, RECIPE_COMMANDS, build_parser

COMMAND_FUNCTIONS = {
    "run": commands.cmd_run,
    "search": commands.cmd_search,
    "check": commands.cmd_check,
    "data": data.cmd_data,
    "plan": plan.cmd_plan,
    "validate": commands.cmd_validate,
    "schema": commands.cmd_schema,
    "plugins": commands.cmd_plugins,
    "components": commands.cmd_components,
    "runs": runs.cmd_runs,
    "rerun": runs.cmd_rerun,
    "promote": promote.cmd_promote,
    "launch": launch.cmd_launch,
    "evaluate": after.cmd_evaluate,
    "predict": after.cmd_predict,
    "chat": after.cmd_chat,
    "diff": after.cmd_diff,
    "explain": after.cmd_explain,
}

#: what an override looks like on the command line (the recipe module parses it)
_OVERRIDE = re.compile(r"^[A-Za-z0-9_\-$][A-Za-z0-9_\-.$]*=")


def main(argv=None) -> int:
    """Entry point of the ``fturun`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_arguments(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args is None:
        return 2
    from ..core.redaction import RedactingStream
    from .console import apply_console_policy

    apply_console_policy(args.verbose)
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
    except OSError as exc:  # a read-only or full disk, ... met outside a run's own handling
        fault = environment_fault(exc)
        if fault is None:
            raise
        print(f"error: {fault}", file=sys.stderr)
        return fault.exit_code
    finally:
        sys.stdout, sys.stderr = streams


def parse_arguments(argv: list):
    """The parsed arguments, overrides gathered into ``args.overrides`` (``KEY=VALUE`` items
    and ``--set``); None after printing the help (no command given). Raises
    :class:`UsageError` for a mistyped command."""
    argv = list(argv)
    first = next((i for i, a in enumerate(argv) if a not in ("-v", "--verbose")), None)
    if first is not None and argv[first] not in COMMANDS and not argv[first].startswith("-"):
        check_command_name(argv[first])
        argv.insert(first, "run")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return None
    args.verbose = getattr(args, "verbose", False)
    if extra:
        # overrides after --resume CHECKPOINT land here; anything else is a usage error
        if args.command in RECIPE_COMMANDS and all(_OVERRIDE.match(e) for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    resume = getattr(args, "resume", None)
    if resume and resume != "latest" and "=" in resume and not os.path.exists(resume):
        args.overrides = list(args.overrides) + [resume]  # `--resume KEY=VALUE`: an override
        args.resume = "latest"
    gather_overrides(args)
    return args


def check_command_name(word: str) -> None:
    """``fturun WORD``: a recipe (``fturun run WORD``) unless WORD is no file and is close to a
    command's name: then a usage error with "did you mean"."""
    import difflib

    if os.path.exists(word) or _OVERRIDE.match(word):
        return
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if close:
        raise UsageError(f"'{word}' is not a command (did you mean '{close[0]}'?) and no "
                         "recipe file; 'fturun --help' lists the commands")


def gather_overrides(args) -> None:
    """One override convention for every recipe command: ``KEY=VALUE`` items (after the
    recipe, or among ``validate``'s recipes) and ``--set KEY=VALUE``, in that order."""
    if args.command not in RECIPE_COMMANDS:
        return
    if args.command == "validate":
        items = args.recipes
        args.recipes = [i for i in items if os.path.exists(i) or not _OVERRIDE.match(i)]
        args.overrides = [i for i in items if i not in args.recipes]
        if not args.recipes:
            raise UsageError("validate: no recipe file given, only overrides; write "
                             "'fturun validate RECIPE KEY=VALUE ...'")
    elif args.command != "rerun" and _OVERRIDE.match(args.recipe) and \
            not os.path.exists(args.recipe):
        files = [o for o in args.overrides if os.path.exists(o)]
        if len(files) != 1:
            raise UsageError(f"'{args.recipe}' is an override, not a recipe file; write "
                             f"'fturun {args.command} RECIPE {args.recipe}'")
        args.overrides = [args.recipe] + [o for o in args.overrides if o != files[0]]
        args.recipe = files[0]
    args.overrides = list(args.overrides) + list(getattr(args, "set_overrides", []) or [])
