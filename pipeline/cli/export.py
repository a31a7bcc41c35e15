"""``export RUN_DIR [--formats NAME ...] [--int8-io]``: re-export a finished run."""

from __future__ import annotations

from pipeline import api
from pipeline.cli.common import add_run_dir, finish


def register(sub) -> None:
    p = sub.add_parser("export", help="(re)export a finished run's student: python -m pipeline export runs/NAME")
    add_run_dir(p)
    p.add_argument("--formats", nargs="+", help="format names (default: the run's export.formats)")
    p.add_argument("--int8-io", action="store_true", help="tflite_int8 with int8 input/output tensors")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    return finish(api.export(args.run_dir, formats=args.formats, int8_io=args.int8_io))
