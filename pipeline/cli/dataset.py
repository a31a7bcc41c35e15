"""``dataset check --format FORMAT --root DIR [key.path=value ...] [--json]``: what a dataset on disk holds."""

from __future__ import annotations

from pipeline.data.check import main as dataset_check


def register(sub) -> None:
    p = sub.add_parser("dataset", help="dataset tools: python -m pipeline dataset check --format F --root DIR")
    p.add_argument("action", choices=["check"])
    p.add_argument("--format", required=True, help="a source name: 300w_lp, aflw2000, biwi, mpiigaze, csv, ...")
    p.add_argument("--root", required=True, help="the dataset's folder (biwi: also a .npz file)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="e.g. data.csv.file=train.csv")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    return dataset_check(args.format, args.root, args.json, args.overrides)
