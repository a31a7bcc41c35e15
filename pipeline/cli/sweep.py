"""``sweep CONFIG [key.path=value ...] [--students a,b,c] [--out DIR]``: one run per student, a
latency-vs-error table and plot."""

from __future__ import annotations

from pipeline import api
from pipeline.cli.common import add_config_args
from pipeline.sweep import format_md

DEFAULT_STUDENTS = "mobile_xs,mobile_s,mobile_m"


def register(sub) -> None:
    p = sub.add_parser("sweep", help="distil, quantize, export and benchmark several students of one config")
    add_config_args(p)
    p.add_argument("--students", default=DEFAULT_STUDENTS,
                   help=f"comma-separated student architectures (default: {DEFAULT_STUDENTS})")
    p.add_argument("--out", default="runs")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    students = [s.strip() for s in args.students.split(",") if s.strip()]
    result = api.sweep(args.config, students, args.overrides, out=args.out)
    print(format_md(result["rows"], result["choice"]))
    return 0
