"""Command line: ``python -m pipeline run face_pose.yaml`` and friends.

Commands:
  run CONFIG [key.path=value ...] [--out DIR] [--force STAGE] [--only STAGE]
  validate CONFIG [key.path=value ...]      check a config; print nothing else on success
  show-config CONFIG [key.path=value ...]   print the resolved config (every default filled in)
  export RUN_DIR [--formats NAME ...] [--int8-io]   re-export a finished run (runs/<experiment>)
  presets                                   list the bundled presets
  init NAME [DEST]                          copy a bundled preset to edit
  ablate CONFIG [key.path=value ...] [--grid quick|full] [--methods ..] [--fractions ..] [--noise ..]
         [--seeds N] [--jobs N] [--out DIR]   methods x outlier fractions x noise x seeds

CONFIG is a path, or the name of a bundled preset when no such file exists. Exit codes: 0 success,
1 a stage failed (see summary.json), 2 a user error (bad config, path or arguments).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import yaml

from pipeline.config import PRESETS_DIR, load_config, resolve_config_path
from pipeline.schema import ConfigError, to_dict

log = logging.getLogger("pipeline")

EXIT_STAGE_FAILED = 1
EXIT_USER_ERROR = 2


def _stage_names() -> list[str]:
    from pipeline.stages import STAGES

    return [s.name for s in STAGES]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline (cached stages are skipped)")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", metavar="key.path=value")
    run.add_argument("--out", default="runs", help="runs folder (default: runs/)")
    run.add_argument("--force", action="append", default=[], metavar="STAGE",
                     help="rerun STAGE and everything downstream (repeatable)")
    run.add_argument("--only", action="append", default=[], metavar="STAGE",
                     help="run only STAGE (and whatever upstream it still needs); repeatable")
    for name, helptext in (("validate", "check a config"), ("show-config", "print the resolved config")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("config")
        c.add_argument("overrides", nargs="*", metavar="key.path=value")
    ab = sub.add_parser("ablate", help="sweep methods x outlier fractions x noise levels x seeds")
    ab.add_argument("config")
    ab.add_argument("overrides", nargs="*", metavar="key.path=value")
    ab.add_argument("--out", default="runs")
    ab.add_argument("--grid", choices=["full", "quick"], default="full",
                    help="quick: fewer epochs (teacher / 3, student / 8) and 2 seeds")
    ab.add_argument("--methods", help="comma-separated (default: all 7)")
    ab.add_argument("--fractions", help="comma-separated outlier fractions (default: 0,0.1,0.2,0.4)")
    ab.add_argument("--noise", help="comma-separated Gaussian noise levels (default: the preset's)")
    ab.add_argument("--seeds", type=int, help="seeds per point (default: 3; quick: 2)")
    ab.add_argument("--jobs", type=int, default=2, help="parallel runs (threads are split between them)")
    ab.add_argument("--vary", metavar="KEY=v1,v2", help="also sweep one option for every method (a knob sweep)")
    ex = sub.add_parser("export", help="(re)export a finished run's student: python -m pipeline export runs/NAME")
    ex.add_argument("run_dir", help="a run folder, <out>/<experiment>, holding config.yaml")
    ex.add_argument("--formats", nargs="+", help="format names (default: the run's export.formats)")
    ex.add_argument("--int8-io", action="store_true", help="tflite_int8 with int8 input/output tensors")
    sub.add_parser("presets", help="list bundled presets")
    init = sub.add_parser("init", help="copy a bundled preset to edit")
    init.add_argument("name")
    init.add_argument("dest", nargs="?")
    return p


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#") and "python -m" not in line:
            return line.lstrip("# ").strip()
    return ""


def _print_summary(result) -> None:
    rows = []
    for name, e in result.summary["stages"].items():
        m = e.get("metrics", {})
        headline = f"test_mae {m['test_mae']:.3f}" if "test_mae" in m else ""
        rows.append((name, e["status"], headline, e.get("reason", "") or Path(e["dir"]).name))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for r in rows:
        print(f"  {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    print(f"\nsummary: {result.path}")


def _check_stages(names: list[str], flag: str) -> None:
    known = _stage_names()
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError([f"{flag} {b}: unknown stage; use one of: {', '.join(known)}" for b in bad])


def _export(args) -> int:
    """Rerun only the export stage of an existing run, reusing its trained models."""
    from pipeline.orchestrate import plan, run_pipeline

    run_dir = Path(args.run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError([f"{run_dir}: not a run folder (no config.yaml); give <out>/<experiment> of a "
                           "finished `python -m pipeline run`"])
    overrides = []
    if args.formats:
        overrides.append(f"export.formats=[{','.join(args.formats)}]")
    if args.int8_io:
        overrides.append("export.int8_io=true")
    cfg = load_config(str(config_file), overrides)
    out = run_dir.parent
    missing = [p.stage.name for p in plan(cfg, out) if p.stage.name in ("data", "teacher", "distill")
               and not p.dir.is_complete()]
    if missing:
        raise ConfigError([f"{run_dir}: stage(s) {', '.join(missing)} are not complete; run "
                           f"`python -m pipeline run {config_file}` first"])
    result = run_pipeline(cfg, out, force={"export"}, only={"export"}, config_source=str(config_file))
    _print_summary(result)
    return EXIT_STAGE_FAILED if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Overrides may follow options (run cfg --out x a.b=1): argparse leaves those in `extra`.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    # Our own loggers at INFO; third-party converters (JAX, TF, litert) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for name in ("pipeline", "exporters", "benchmarks"):
        logging.getLogger(name).setLevel(logging.INFO)
    # coremltools warns at import that its macOS-only runtime is missing; the Linux path does not need it.
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    try:
        if args.command == "presets":
            for p in sorted(PRESETS_DIR.glob("*.yaml")):
                print(f"{p.name:<18} {_first_comment(p)}")
            return 0
        if args.command == "init":
            src = resolve_config_path(args.name)
            dest = Path(args.dest or src.name)
            if dest.is_dir():
                dest = dest / src.name
            if dest.exists():
                raise ConfigError([f"{dest}: already exists; choose another destination or delete it"])
            shutil.copyfile(src, dest)
            print(f"wrote {dest}; run it with: python -m pipeline run {dest}")
            return 0
        if args.command == "ablate":
            from pipeline.ablate import format_summary, make_grid, run_ablation

            grid = make_grid(args.config, args.overrides, args.grid, args.methods, args.fractions, args.noise,
                             args.seeds, args.vary)
            result = run_ablation(args.config, args.overrides, Path(args.out), grid, args.jobs)
            root = Path(args.out) / f"{load_config(args.config, args.overrides).experiment}_ablation"
            print((root / "ablation.md").read_text())
            print(format_summary(result) + f"\nwrote {root / 'ablation.json'}")
            return 0
        if args.command == "export":
            return _export(args)
        cfg = load_config(args.config, args.overrides)
        if args.command == "validate":
            print(f"{args.config}: ok")
            return 0
        if args.command == "show-config":
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        _check_stages(args.force, "--force")
        _check_stages(args.only, "--only")
        from pipeline.orchestrate import run_pipeline

        result = run_pipeline(cfg, Path(args.out), set(args.force), set(args.only) or None,
                              config_source=args.config)
        _print_summary(result)
        return EXIT_STAGE_FAILED if result.failed else 0
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
