"""``bench RUN_DIR [--backends ..] [--threads 1,2] [--repeats N] [--device adb:SERIAL --benchmark-model PATH]
[--max-error DEG]``: benchmark a finished run's artifacts on the host and on an Android phone, print the table,
and (for CI) fail when an artifact's own error is above a threshold."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.backends import BACKENDS
from benchmarks.harness import accuracy_violations, format_table
from pipeline import api
from pipeline.cli.common import add_run_dir, finish
from pipeline.contract import load_benchmark
from pipeline.schema import ConfigError


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark a finished run's artifacts: python -m pipeline bench runs/NAME")
    add_run_dir(p)
    p.add_argument("--backends", help=f"comma-separated: {','.join(BACKENDS)} (default: the run's)")
    p.add_argument("--threads", help="comma-separated CPU thread counts, e.g. 1,2 (default: the run's)")
    p.add_argument("--repeats", type=int, help="timing repeats per artifact and thread count")
    p.add_argument("--device", metavar="adb:SERIAL", help="also run on an Android device over adb ('adb' alone: "
                   "the only attached device)")
    p.add_argument("--benchmark-model", metavar="PATH", help="the benchmark_model binary to push to the device")
    p.add_argument("--max-error", type=float, metavar="DEG", help="exit 1 when an artifact's own clean-test "
                   "MAE (label units, e.g. degrees) is above DEG or was not measured (for CI)")
    p.set_defaults(handler=handle)


def _threads(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError([f"--threads {text}: give comma-separated whole numbers, e.g. 1,2"]) from None


def handle(args) -> int:
    if args.max_error is not None and not args.max_error > 0:
        raise ConfigError([f"--max-error {args.max_error}: give a positive error in label units, e.g. 5 (degrees)"])
    serial = None
    if args.device:
        kind, _, serial = args.device.partition(":")
        if kind != "adb":
            raise ConfigError([f"--device {args.device}: unknown device kind; use adb or adb:SERIAL"])
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    result = api.bench(args.run_dir, backends=backends, threads=_threads(args.threads), repeats=args.repeats,
                       android_serial=serial, benchmark_model=args.benchmark_model)
    code = finish(result)
    stage = result.summary["stages"].get("benchmark", {})
    if stage.get("status") != "ran":
        return code
    bench = load_benchmark(Path(stage["dir"]))
    print("\n" + format_table(bench))
    over = accuracy_violations(bench, args.max_error) if args.max_error is not None else []
    for line in over:
        print(f"above --max-error: {line}", file=sys.stderr)
    return max(1, code) if over else code
