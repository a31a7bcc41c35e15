"""``dataset check --format FORMAT --root DIR [key.path=value ...] [--json]``: read a dataset as the
pipeline would and say what it holds (count, skipped samples by reason, label names and units, per-label
min / max / mean, the first labels in the pipeline's convention) before a long run."""

from __future__ import annotations

import json

from pipeline import api
from pipeline.data.sources import SOURCES


def register(sub) -> None:
    p = sub.add_parser("dataset", help="dataset tools: python -m pipeline dataset check --format F --root DIR")
    p.add_argument("action", choices=["check"])
    p.add_argument("--format", required=True, help=f"a source name: {', '.join(SOURCES)}")
    p.add_argument("--root", required=True, help="the dataset's folder (biwi: also a .npz file)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="e.g. data.csv.file=train.csv")
    p.set_defaults(handler=handle)


def format_report(fmt: str, root: str, report: dict) -> str:
    lines = [f"{fmt} at {root}: {report['count']} samples, {sum(report['skipped'].values())} skipped"]
    for reason, n in report["skipped"].items():
        lines.append(f"  skipped {n:>6}  {reason}")
    lines.append(f"labels ({report['units']}):")
    for name, s in report["stats"].items():
        lines.append(f"  {name:<10} min {s['min']:9.3f}  max {s['max']:9.3f}  mean {s['mean']:9.3f}")
    lines.append("first labels (" + ", ".join(report["label_names"]) + "):")
    lines += ["  " + "  ".join(f"{v:9.3f}" for v in row) for row in report["first"]]
    return "\n".join(lines)


def handle(args) -> int:
    report = api.check_dataset(args.format, args.root, args.overrides)
    print(json.dumps(report) if args.json else format_report(args.format, args.root, report))
    return 0
