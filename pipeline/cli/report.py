"""``report RUN_DIR [--ablation DIR]``: (re)write a finished run's report.html and report.md."""

from __future__ import annotations

from pathlib import Path

from pipeline import api
from pipeline.cli.common import finish


def register(sub) -> None:
    p = sub.add_parser("report", help="(re)write a finished run's report.html and report.md: "
                       "python -m pipeline report runs/NAME")
    p.add_argument("run_dir", help="the run folder, <out>/<experiment>")
    p.add_argument("--ablation", metavar="DIR", help="an ablation folder (<out>/<experiment>_ablation) to include")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    result = api.report(args.run_dir, ablation=args.ablation)
    code = finish(result)
    stage = result.summary["stages"].get("report", {})
    if stage.get("status") == "ran":
        print(f"report: {Path(stage['dir']) / 'report.html'}\n        {Path(stage['dir']) / 'report.md'}")
    return code
