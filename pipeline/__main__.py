"""Command line: ``python -m pipeline run face_pose.yaml`` and friends.

Commands:
  run CONFIG [key.path=value ...] [--out DIR] [--force STAGE] [--only STAGE]
  validate CONFIG [key.path=value ...]      check a config; print nothing else on success
  show-config CONFIG [key.path=value ...]   print the resolved config (every default filled in)
  export RUN_DIR [--formats NAME ...] [--int8-io]   re-export a finished run (runs/<experiment>)
  bench RUN_DIR [--backends ..] [--threads 1,2] [--repeats N] [--device adb:SERIAL --benchmark-model PATH]
        [--max-error DEG]
                                            benchmark a finished run's artifacts (host and Android)
  sweep CONFIG [key.path=value ...] [--students a,b,c] [--out DIR]
                                            one run per student, a latency-vs-error table and plot
  report RUN_DIR [--ablation DIR]           write a finished run's report.html and report.md
  presets                                   list the bundled presets
  init NAME [DEST]                          copy a bundled preset to edit
  dataset check --format FORMAT --root DIR [key.path=value ...] [--json]   what a dataset on disk holds
  ablate CONFIG [key.path=value ...] [--grid quick|full] [--methods ..] [--fractions ..] [--noise ..]
         [--seeds N] [--jobs N] [--vary KEY=v1,v2] [--name NAME] [--out DIR]
                                            methods x outlier fractions x noise x seeds

CONFIG is a path, or the name of a bundled preset when no such file exists. Exit codes: 0 success,
1 a stage failed or an artifact failed inside a completed stage (e.g. one format's parity; the others
are still benchmarked and reported; see summary.json), 2 a user error (bad config, path, dataset,
arguments, a full disk, a diverged training run). Errors are one line each; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import yaml

from pipeline.config import PRESETS_DIR, load_config, resolve_config_path
from pipeline.console import setup_console
from pipeline.data.reading import SourceError
from pipeline.runs import UserError
from pipeline.schema import ConfigError
from pipeline.summary import print_summary

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
    ab.add_argument("--name", help="write the tables to <out>/<experiment>_ablation/NAME/ (several studies then "
                                   "share the cached data, teachers and students without overwriting each "
                                   "other's tables)")
    ex = sub.add_parser("export", help="(re)export a finished run's student: python -m pipeline export runs/NAME")
    ex.add_argument("run_dir", help="a run folder, <out>/<experiment>, holding config.yaml")
    ex.add_argument("--formats", nargs="+", help="format names (default: the run's export.formats)")
    ex.add_argument("--int8-io", action="store_true", help="tflite_int8 with int8 input/output tensors")
    be = sub.add_parser("bench", help="benchmark a finished run's artifacts: python -m pipeline bench runs/NAME")
    be.add_argument("run_dir", help="a run folder, <out>/<experiment>, holding config.yaml")
    be.add_argument("--backends", help="comma-separated: torch,onnxruntime,litert,coreml,android (default: all)")
    be.add_argument("--threads", help="comma-separated CPU thread counts, e.g. 1,2 (default: the run's)")
    be.add_argument("--repeats", type=int, help="timing repeats per artifact and thread count")
    be.add_argument("--device", metavar="adb:SERIAL", help="also run on an Android device over adb ('adb' alone: "
                    "the only attached device)")
    be.add_argument("--benchmark-model", metavar="PATH", help="the benchmark_model binary to push to the device")
    be.add_argument("--max-error", type=float, metavar="DEG", help="exit 1 when an artifact's own clean-test "
                    "MAE (label units, e.g. degrees) is above DEG or was not measured (for CI)")
    rp = sub.add_parser("report", help="(re)write a finished run's report.html and report.md: "
                        "python -m pipeline report runs/NAME")
    rp.add_argument("run_dir", help="the run folder, <out>/<experiment>")
    rp.add_argument("--ablation", metavar="DIR", help="an ablation folder (<out>/<experiment>_ablation) to include")
    sw = sub.add_parser("sweep", help="distil, quantize, export and benchmark several students of one config")
    sw.add_argument("config")
    sw.add_argument("overrides", nargs="*", metavar="key.path=value")
    sw.add_argument("--students", default="mobile_xs,mobile_s,mobile_m",
                    help="comma-separated student architectures (default: mobile_xs,mobile_s,mobile_m)")
    sw.add_argument("--out", default="runs")
    sub.add_parser("presets", help="list bundled presets")
    init = sub.add_parser("init", help="copy a bundled preset to edit")
    init.add_argument("name")
    init.add_argument("dest", nargs="?")
    ds = sub.add_parser("dataset", help="dataset tools: python -m pipeline dataset check --format F --root DIR")
    ds.add_argument("action", choices=["check"])
    ds.add_argument("--format", required=True, help="a source name: 300w_lp, aflw2000, biwi, mpiigaze, csv, ...")
    ds.add_argument("--root", required=True, help="the dataset's folder (biwi: also a .npz file)")
    ds.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ds.add_argument("overrides", nargs="*", metavar="key.path=value", help="e.g. data.csv.file=train.csv")
    verbose_help = "also show third-party warnings, C++ log lines and converter progress bars; DEBUG logs"
    p.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    debug_help = "print the traceback of an error (stage tracebacks are always in the stage's stage.log)"
    p.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # accepted after the command too: run smoke.yaml --verbose
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return p


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#") and "python -m" not in line:
            return line.lstrip("# ").strip()
    return ""


def _check_stages(names: list[str], flag: str) -> None:
    known = _stage_names()
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError([f"{flag} {b}: unknown stage; use one of: {', '.join(known)}" for b in bad])


def _rerun(run_dir: Path, stage: str, overrides: list[str], needs_complete: tuple[str, ...]):
    """Rerun one stage of an existing run, reusing its upstream stages (which must be complete)."""
    from pipeline.orchestrate import plan, run_pipeline

    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError([f"{run_dir}: not a run folder (no config.yaml); give <out>/<experiment> of a "
                           "finished `python -m pipeline run`"])
    old = _old_schema(run_dir)
    try:
        cfg = load_config(str(config_file), overrides)
    except ConfigError as exc:
        if old is None:
            raise
        exc.problems.append(_schema_hint(run_dir, old))
        raise
    out = run_dir.parent
    missing = [p.stage.name for p in plan(cfg, out) if p.stage.name in needs_complete and not p.dir.is_complete()]
    if missing:
        raise ConfigError([_schema_hint(run_dir, old) if old is not None else
                           f"{run_dir}: stage(s) {', '.join(missing)} are not complete; run "
                           f"`python -m pipeline run {config_file}` first"])
    return run_pipeline(cfg, out, force={stage}, only={stage}, config_source=str(config_file))


def _old_schema(run_dir: Path) -> str | None:
    """The schema version of a run folder's manifests when it differs from this pipeline's."""
    from pipeline.config import SCHEMA_VERSION

    for manifest in sorted(run_dir.glob("*/manifest.json")):
        try:
            version = json.loads(manifest.read_text()).get("schema_version")
        except (OSError, ValueError):
            continue
        if version != SCHEMA_VERSION:
            return str(version)
    return None


def _schema_hint(run_dir: Path, old: str) -> str:
    from pipeline.config import SCHEMA_VERSION

    return (f"{run_dir} was written by an older pipeline (run schema {old}, this one writes {SCHEMA_VERSION}); "
            f"rebuild it with `python -m pipeline run <its config> --out {run_dir.parent}` "
            "(its old stage folders are never read)")


def _export(args) -> int:
    """Rerun only the export stage of an existing run, reusing its trained models."""
    overrides = []
    if args.formats:
        overrides.append(f"export.formats=[{','.join(args.formats)}]")
    if args.int8_io:
        overrides.append("export.int8_io=true")
    result = _rerun(Path(args.run_dir), "export", overrides, ("data", "teacher", "distill"))
    print_summary(result)
    return _exit_code(result)


def _sweep(args) -> int:
    """One run per student, one table and plot (pipeline.sweep)."""
    from pipeline.models import MODELS
    from pipeline.sweep import format_md, run_sweep

    students = [s.strip() for s in args.students.split(",") if s.strip()]
    bad = [s for s in students if s not in MODELS or MODELS[s].role != "student"]
    if bad:
        raise ConfigError([f"--students {b}: not a student architecture; use any of: "
                           + ", ".join(n for n, m in MODELS.items() if m.role == "student") for b in bad])
    load_config(args.config, args.overrides)  # every config problem before anything runs
    result = run_sweep(args.config, args.overrides, students, Path(args.out))
    print(format_md(result["rows"], result["choice"]))
    return 0


def _bench(args) -> int:
    """Rerun only the benchmark stage of a finished run and print its table."""
    if args.max_error is not None and not args.max_error > 0:
        raise ConfigError([f"--max-error {args.max_error}: give a positive error in label units, e.g. 5 (degrees)"])
    overrides = []
    if args.backends:
        overrides.append(f"benchmark.backends=[{args.backends}]")
    if args.threads:
        overrides.append(f"benchmark.threads=[{args.threads}]")
    if args.repeats is not None:
        overrides.append(f"benchmark.repeats={args.repeats}")
    if args.device:
        kind, _, serial = args.device.partition(":")
        if kind != "adb":
            raise ConfigError([f"--device {args.device}: unknown device kind; use adb or adb:SERIAL"])
        overrides.append(f"benchmark.android.serial='{serial}'")
        if not args.benchmark_model:
            raise ConfigError(["--device needs --benchmark-model PATH (the benchmark_model binary to push; "
                               "see README, Benchmarks)"])
    if args.benchmark_model:
        if not Path(args.benchmark_model).is_file():
            raise ConfigError([f"--benchmark-model {args.benchmark_model}: no such file; give the path of a "
                               "benchmark_model binary built for the phone's ABI"])
        overrides.append(f"benchmark.android.benchmark_model='{Path(args.benchmark_model).resolve()}'")
    result = _rerun(Path(args.run_dir), "benchmark", overrides, ("data", "teacher", "distill", "export"))
    print_summary(result)
    stage = result.summary["stages"].get("benchmark", {})
    bench_json = Path(stage.get("dir", "")) / "benchmark.json"
    if bench_json.is_file():
        import json

        from benchmarks.harness import format_table

        print("\n" + format_table(json.loads(bench_json.read_text())))
        if args.max_error is not None:
            from benchmarks.harness import accuracy_violations

            over = accuracy_violations(json.loads(bench_json.read_text()), args.max_error)
            for line in over:
                print(f"above --max-error: {line}", file=sys.stderr)
            if over:
                return max(1, _exit_code(result))
    return _exit_code(result)


def _report(args) -> int:
    """Rerun only the report stage of a finished run (with an ablation of it, if given)."""
    ablation = Path(args.ablation) if args.ablation else None
    if ablation is not None and not (ablation / "ablation.json").is_file():
        raise ConfigError([f"--ablation {ablation}: no ablation.json there; give the folder "
                           "`python -m pipeline ablate` wrote (<out>/<experiment>_ablation)"])
    result = _rerun(Path(args.run_dir), "report", [], ("data",))
    stage = result.summary["stages"].get("report", {})
    if ablation is not None and stage.get("status") == "ran":
        from pipeline.contract import Run, as_metrics
        from pipeline.report import render_report
        from pipeline.runs import atomic_write_json, read_json

        report_dir = Path(stage["dir"])
        metrics = render_report(Run.open(Path(args.run_dir)), report_dir, ablation)
        manifest = read_json(report_dir / "manifest.json")
        manifest["metrics"] = as_metrics(metrics)
        atomic_write_json(report_dir / "manifest.json", manifest)
    print_summary(result)
    if stage.get("status") == "ran":
        print(f"report: {Path(stage['dir']) / 'report.html'}\n        {Path(stage['dir']) / 'report.md'}")
    return _exit_code(result)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Overrides may follow options (run cfg --out x a.b=1): argparse leaves those in `extra`.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    setup_console(args.verbose)  # our loggers at INFO; known third-party noise hidden unless --verbose
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

            if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
                raise ConfigError([f"--name {args.name}: use a plain folder name (letters, digits, _ . -)"])
            grid = make_grid(args.config, args.overrides, args.grid, args.methods, args.fractions, args.noise,
                             args.seeds, args.vary)
            result = run_ablation(args.config, args.overrides, Path(args.out), grid, args.jobs, args.name)
            root = Path(args.out) / f"{load_config(args.config, args.overrides).experiment}_ablation" / (args.name or "")
            print((root / "ablation.md").read_text())
            print(format_summary(result) + f"\nwrote {root / 'ablation.json'}")
            return 0
        if args.command == "export":
            return _export(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "report":
            return _report(args)
        if args.command == "dataset":
            from pipeline.data.check import main as dataset_check

            return dataset_check(args.format, args.root, args.json, args.overrides)
        cfg = load_config(args.config, args.overrides)
        if args.command == "validate":
            print(f"{args.config}: ok")
            return 0
        if args.command == "show-config":
            from pipeline.config import public_dict

            print(yaml.safe_dump(public_dict(cfg), sort_keys=False), end="")
            return 0
        _check_stages(args.force, "--force")
        _check_stages(args.only, "--only")
        from pipeline.orchestrate import run_pipeline

        result = run_pipeline(cfg, Path(args.out), set(args.force), set(args.only) or None,
                              config_source=args.config, debug=args.debug)
        if not result.writer:  # another torchrun rank: rank 0 reports
            return 0
        print_summary(result)
        return _exit_code(result)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (UserError, SourceError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (an internal error; rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_STAGE_FAILED


def _exit_code(result) -> int:
    """2 when a stage failed for a reason the user can fix (each printed as one line), 1 for other failures
    and for failures inside completed stages (a format that failed parity, cached or not)."""
    for name in result.user_errors:
        print(f"error: {name}: {result.summary['stages'][name]['reason']}", file=sys.stderr)
    if result.user_errors:
        return EXIT_USER_ERROR
    return EXIT_STAGE_FAILED if result.failed or result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
