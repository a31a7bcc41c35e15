"""What the command modules share: exit codes and the end of a command that ran stages."""

from __future__ import annotations

import argparse
import sys

from pipeline.orchestrate import RunResult
from pipeline.summary import print_summary

EXIT_STAGE_FAILED = 1
EXIT_USER_ERROR = 2


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a config file, or the name of a bundled preset (python -m pipeline presets)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value")


def add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder, <out>/<experiment>, holding config.yaml")


def finish(result: RunResult) -> int:
    """Print the run's table and return its exit code."""
    print_summary(result)
    return exit_code(result)


def exit_code(result: RunResult) -> int:
    """2 when a stage failed for a reason the user can fix (each printed as one line), 1 for other failures
    and for failures inside completed stages (a format that failed parity, cached or not)."""
    for name in result.user_errors:
        print(f"error: {name}: {result.summary['stages'][name]['reason']}", file=sys.stderr)
    if result.user_errors:
        return EXIT_USER_ERROR
    return EXIT_STAGE_FAILED if result.failed or result.failures else 0
