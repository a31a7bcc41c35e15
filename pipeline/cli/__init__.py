"""Command line: ``python -m pipeline run face_pose.yaml`` and friends, a thin layer over :mod:`pipeline.api`.

Each command lives in its own module of this package, which adds its subparser and handles it; this
module holds the table of those modules, the options every command takes, and the one place that turns
errors into exit codes: 0 success, 1 a stage failed or an artifact failed inside a completed stage (e.g.
one format's parity; the others are still benchmarked and reported; see summary.json), 2 a user error
(bad config, path, dataset, arguments, a full disk, a diverged training run). Errors are one line each;
``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.cli import ablate, bench, configs, dataset, export, predict, report, run, sweep
from pipeline.cli.common import EXIT_STAGE_FAILED, EXIT_USER_ERROR
from pipeline.console import setup_console
from pipeline.data.reading import SourceError
from pipeline.runs import UserError
from pipeline.schema import ConfigError

# The commands, in the order `--help` lists them: each module's register(sub) adds its subparser(s) and
# sets `handler` (args -> exit code).
COMMAND_MODULES = (run, configs, export, bench, report, sweep, ablate, dataset, predict)

VERBOSE_HELP = "also show third-party warnings, C++ log lines and converter progress bars; DEBUG logs"
DEBUG_HELP = "print the traceback of an error (stage tracebacks are always in the stage's stage.log)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline",
                                description="Noisy-label regression to a small int8 phone model.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    for command in sub.choices.values():  # accepted after the command too: run smoke.yaml --verbose
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may follow options (run cfg --out x a.b=1): argparse leaves those in `extra`.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    setup_console(args.verbose)  # our loggers at INFO; known third-party noise hidden unless --verbose
    try:
        return args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (UserError, SourceError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (an internal error; rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_STAGE_FAILED
