"""The ``fturun`` command line. Exit codes: 0 ok, 1 the run failed, 2 bad recipe or usage,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""

from __future__ import annotations

import os
import sys

from ..errors import FturunError, RecipeError
from . import commands, launch, runs
from .parser import COMMANDS, build_parser

COMMAND_FUNCTIONS = {
    "run": commands.cmd_run,
    "search": commands.cmd_search,
    "check": commands.cmd_check,
    "validate": commands.cmd_validate,
    "schema": commands.cmd_schema,
    "plugins": commands.cmd_plugins,
    "components": commands.cmd_components,
    "runs": runs.cmd_runs,
    "rerun": runs.cmd_rerun,
    "launch": launch.cmd_launch,
}


def main(argv=None) -> int:
    """Entry point of the ``fturun`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = build_parser()
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
    from ..redaction import RedactingStream

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
