"""``ablate CONFIG [key.path=value ...] [--grid quick|full] [--methods ..] [--fractions ..] [--noise ..]
[--seeds N] [--jobs N] [--vary KEY=v1,v2] [--name NAME] [--out DIR]``: methods x outlier fractions x noise
x seeds."""

from __future__ import annotations

from pathlib import Path

from pipeline import api
from pipeline.ablate import format_summary
from pipeline.cli.common import add_config_args


def register(sub) -> None:
    p = sub.add_parser("ablate", help="sweep methods x outlier fractions x noise levels x seeds")
    add_config_args(p)
    p.add_argument("--out", default="runs")
    p.add_argument("--grid", choices=["full", "quick"], default="full",
                   help="quick: fewer epochs (teacher / 3, student / 8) and 2 seeds")
    p.add_argument("--methods", help="comma-separated (default: all 7)")
    p.add_argument("--fractions", help="comma-separated outlier fractions (default: 0,0.1,0.2,0.4)")
    p.add_argument("--noise", help="comma-separated Gaussian noise levels (default: the preset's)")
    p.add_argument("--seeds", type=int, help="seeds per point (default: 3; quick: 2)")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (threads are split between them)")
    p.add_argument("--vary", metavar="KEY=v1,v2", help="also sweep one option for every method (a knob sweep)")
    p.add_argument("--name", help="write the tables to <out>/<experiment>_ablation/NAME/ (several studies then "
                                  "share the cached data, teachers and students without overwriting each "
                                  "other's tables)")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    result = api.ablate(args.config, args.overrides, out=args.out, grid=args.grid, methods=args.methods,
                        fractions=args.fractions, noise=args.noise, seeds=args.seeds, vary=args.vary,
                        jobs=args.jobs, name=args.name)
    experiment = api.load_config(args.config, args.overrides).experiment
    root = Path(args.out) / f"{experiment}_ablation" / (args.name or "")
    print((root / "ablation.md").read_text())
    print(format_summary(result) + f"\nwrote {root / 'ablation.json'}")
    return 0
