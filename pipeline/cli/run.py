"""``run CONFIG [key.path=value ...] [--out DIR] [--force STAGE] [--only STAGE]``: the whole pipeline."""

from __future__ import annotations

from pipeline import api
from pipeline.cli.common import add_config_args, finish


def register(sub) -> None:
    p = sub.add_parser("run", help="run the pipeline (cached stages are skipped)")
    add_config_args(p)
    p.add_argument("--out", default="runs", help="runs folder (default: runs/)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rerun STAGE and everything downstream (repeatable; stages: "
                        f"{', '.join(api.STAGE_NAMES)})")
    p.add_argument("--only", action="append", default=[], metavar="STAGE",
                   help="run only STAGE (and whatever upstream it still needs); repeatable")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    result = api.run(args.config, args.overrides, force=args.force, only=args.only, out=args.out, debug=args.debug)
    if not result.writer:  # another torchrun rank: rank 0 reports
        return 0
    return finish(result)
