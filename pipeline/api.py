"""The Python API: everything the command line does, callable from a notebook or a script.

    from pipeline import api

    result = api.run("face_pose.yaml", ["distill.train.epochs=10"], out="runs")
    run = api.open_run(result.run_dir)         # typed stage outputs (pipeline.contract.Run)
    print(run.metrics("qat").test_mae)
    api.export(result.run_dir, formats=["tflite_int8"])
    api.bench(result.run_dir, threads=[1])
    api.report(result.run_dir)
    rows = api.predict("photos/", model=result.run_dir, save=True).rows   # every face: box, yaw/pitch/roll

Each function returns what the command prints from: a :class:`~pipeline.orchestrate.RunResult` (the run's
``summary.json`` as a dict, ``run_dir``, the failed stages and the failures inside completed stages), or
the sweep's / ablation's JSON. Bad input raises :class:`~pipeline.schema.ConfigError` (``.problems``, one
line each) or :class:`~pipeline.runs.UserError`; the command line turns those into exit code 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline.ablate import make_grid, run_ablation
from pipeline.config import (
    PRESETS_DIR,
    Config,
    DataConfig,
    data_problems,
    resolve_config_path,
    root_problems,
)
from pipeline.config import load_config as _load_config
from pipeline.contract import Run
from pipeline.data.reading import SourceError
from pipeline.data.sources import SOURCES
from pipeline.faces.detector import MIN_SCORE
from pipeline.models import MODELS
from pipeline.orchestrate import RunResult, plan, run_pipeline
from pipeline.predict.model import DEFAULT_MODEL
from pipeline.predict.run import PredictResult
from pipeline.predict.run import predict as _predict
from pipeline.runs import atomic_write_bytes
from pipeline.schema import SCHEMA_VERSION, ConfigError, apply_overrides, build
from pipeline.stages import STAGES
from pipeline.sweep import run_sweep

__all__ = ["STAGE_NAMES", "PredictResult", "RunResult", "ablate", "bench", "check_dataset", "export", "init_config",
           "load_config", "open_run", "predict", "presets", "report", "run", "sweep"]

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)

PathLike = str | Path


def load_config(config: PathLike, overrides: Sequence[str] = ()) -> Config:
    """A config file, or the name of a bundled preset, with ``key.path=value`` overrides; every default
    filled in and every value checked (all problems at once, in one ConfigError)."""
    return _load_config(str(config), list(overrides))


def run(config: PathLike | Config, overrides: Sequence[str] = (), *, out: PathLike = "runs",
        force: Iterable[str] = (), only: Iterable[str] = (), debug: bool = False) -> RunResult:
    """Run the pipeline; stages whose inputs and config slice are unchanged come from the cache.

    ``force``: rerun these stages and everything downstream; ``only``: run just these (and whatever
    upstream they still need). The run folder is ``<out>/<experiment>``."""
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    source = "" if isinstance(config, Config) else str(config)
    force, only = set(force), set(only)
    _check_stages(force, "--force")
    _check_stages(only, "--only")
    return run_pipeline(cfg, Path(out), force, only or None, config_source=source, debug=debug)


def export(run_dir: PathLike, *, formats: Sequence[str] | None = None, int8_io: bool = False) -> RunResult:
    """Re-export a finished run's student (and teacher) formats, reusing its trained models."""
    overrides = [f"export.formats=[{','.join(formats)}]"] if formats else []
    if int8_io:
        overrides.append("export.int8_io=true")
    return _rerun(Path(run_dir), "export", overrides, ("data", "teacher", "distill"))


def bench(run_dir: PathLike, *, backends: Sequence[str] | None = None, threads: Sequence[int] | None = None,
          repeats: int | None = None, android_serial: str | None = None,
          benchmark_model: PathLike | None = None) -> RunResult:
    """Rerun the benchmark stage of a finished run: every artifact on every backend and thread count.
    ``android_serial`` ("" for the only attached device) with ``benchmark_model`` (the binary to push)
    adds the phone's rows."""
    overrides = []
    if backends:
        overrides.append(f"benchmark.backends=[{','.join(backends)}]")
    if threads:
        overrides.append(f"benchmark.threads=[{','.join(str(n) for n in threads)}]")
    if repeats is not None:
        overrides.append(f"benchmark.repeats={repeats}")
    if android_serial is not None:
        if benchmark_model is None:
            raise ConfigError(["an Android device needs benchmark_model (--benchmark-model PATH: the "
                               "benchmark_model binary to push; see the docs, Benchmarks)"])
        overrides.append(f"benchmark.android.serial='{android_serial}'")
    if benchmark_model is not None:
        if not Path(benchmark_model).is_file():
            raise ConfigError([f"--benchmark-model {benchmark_model}: no such file; give the path of a "
                               "benchmark_model binary built for the phone's ABI"])
        overrides.append(f"benchmark.android.benchmark_model='{Path(benchmark_model).resolve()}'")
    return _rerun(Path(run_dir), "benchmark", overrides, ("data", "teacher", "distill", "export"))


def report(run_dir: PathLike, *, ablation: PathLike | None = None) -> RunResult:
    """(Re)write a finished run's ``report.html`` and ``report.md``, with an ablation's tables if given."""
    if ablation is not None and not (Path(ablation) / "ablation.json").is_file():
        raise ConfigError([f"--ablation {ablation}: no ablation.json there; give the folder "
                           "`python -m pipeline ablate` wrote (<out>/<experiment>_ablation)"])
    overrides = [f"report.ablation='{Path(ablation).resolve()}'"] if ablation is not None else []
    return _rerun(Path(run_dir), "report", overrides, ("data",))


def sweep(config: PathLike, students: Sequence[str], overrides: Sequence[str] = (), *,
          out: PathLike = "runs") -> dict:
    """One run per student architecture of one config; the latency-vs-error table, plot and pick
    (written to ``<out>/<experiment>_sweep/``). Returns the sweep's JSON."""
    bad = [s for s in students if s not in MODELS or MODELS[s].role != "student"]
    if bad:
        raise ConfigError([f"--students {b}: not a student architecture; use any of: "
                           + ", ".join(n for n, m in MODELS.items() if m.role == "student") for b in bad])
    load_config(config, overrides)  # every config problem before anything runs
    return run_sweep(str(config), list(overrides), list(students), Path(out))


def ablate(config: PathLike, overrides: Sequence[str] = (), *, out: PathLike = "runs", grid: str = "full",
           methods: str | None = None, fractions: str | None = None, noise: str | None = None,
           seeds: int | None = None, vary: str | None = None, jobs: int = 2, name: str | None = None) -> dict:
    """Methods x outlier fractions x noise levels x seeds (comma-separated strings, as on the command line);
    tables in ``<out>/<experiment>_ablation[/name]/``. Returns the ablation's JSON."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError([f"--name {name}: use a plain folder name (letters, digits, _ . -)"])
    g = make_grid(str(config), list(overrides), grid, methods, fractions, noise, seeds, vary)
    return run_ablation(str(config), list(overrides), Path(out), g, jobs, name)


def check_dataset(fmt: str, root: PathLike, overrides: Sequence[str] = ()) -> dict:
    """Read a dataset on disk as the pipeline would and say what it holds, before a long run: a dict of
    ``count``, ``skipped``, ``label_names``, ``units``, ``stats``, ``first``.

    Every sample is read in order into one split (validation and test carving off, no test sets),
    so ``first`` is the first samples read; MPIIGaze keeps its test person apart and counts it.
    """
    if fmt not in SOURCES:
        raise ConfigError([f"--format {fmt}: unknown format; use one of: {', '.join(SOURCES)}"])
    section = SOURCES[fmt].section
    raw: dict = {"data": {"source": fmt, section: {"root": str(root)}}}
    for key, value in (("test", []), ("val_fraction", 0.0), ("test_fraction", 0.0)):
        if hasattr(getattr(DataConfig(), section), key):
            raw["data"][section][key] = value
    raw = apply_overrides(raw, list(overrides or []))
    problems: list[str] = []
    data_cfg = build(Config, raw, "", problems).data
    problems += (data_problems(data_cfg) or root_problems(data_cfg)) if not problems else []
    if problems:
        raise ConfigError(problems)
    try:
        src = SOURCES[fmt].read(data_cfg)
    except SourceError as exc:
        raise ConfigError([str(exc)]) from exc
    order = ("train", "test", "val")
    ys = [src.splits[s].y for s in order if len(src.splits[s].y)]
    y = np.concatenate(ys) if ys else np.zeros((0, len(src.output_names)), np.float32)
    stats = {name: {"min": float(y[:, i].min()), "max": float(y[:, i].max()), "mean": float(y[:, i].mean())}
             for i, name in enumerate(src.output_names)} if len(y) else {}
    return {"count": int(len(y)), "skipped": {k: int(v) for k, v in sorted(src.skipped.items())},
            "label_names": list(src.output_names), "units": src.units, "stats": stats,
            "first": [[round(float(v), 4) for v in row] for row in y[:5]]}


def predict(source: PathLike, *, model: PathLike = DEFAULT_MODEL, out: PathLike | None = None, save: bool = False,
            smooth: bool = False, recursive: bool = False, threads: int = 1,
            min_score: float = MIN_SCORE) -> PredictResult:
    """An exported pose model on every face of ``source`` (an image, a video, a folder or a glob pattern).

    ``model``: an artifact, its export format folder or a run folder (its shipped int8 TFLite). Writes
    ``predictions.csv`` and ``predictions.json`` into ``out`` (default ``runs/predict/<source name>``),
    with ``save`` annotated images / video too; ``smooth`` filters each face's angles over a video as the
    app does. Returns a :class:`~pipeline.predict.PredictResult`: ``rows`` (one dict per face, or per
    frame without a face / input that could not be read, with its ``error``), ``counts``, ``timing``.
    A bad ``model`` or a ``source`` that names nothing raises :class:`~pipeline.runs.UserError`."""
    return _predict(source, model, out=out, save=save, smooth=smooth, recursive=recursive, threads=threads,
                    min_score=min_score)


def open_run(run_dir: PathLike) -> Run:
    """A finished run's stages and typed outputs (``run.metrics("distill").test_mae``, ``run.stage("export")``)."""
    return Run.open(Path(run_dir))


def presets() -> dict[str, Path]:
    """The bundled presets by file name."""
    return {p.name: p for p in sorted(PRESETS_DIR.glob("*.yaml"))}


def init_config(name: str, dest: PathLike | None = None) -> Path:
    """Copy a bundled preset to ``dest`` (a file or a folder; default: the current folder) to edit."""
    src = resolve_config_path(name)
    target = Path(dest or src.name)
    if target.is_dir():
        target = target / src.name
    if target.exists():
        raise ConfigError([f"{target}: already exists; choose another destination or delete it"])
    atomic_write_bytes(target, src.read_bytes())
    return target


# ---------------------------------------------------------------------------- one stage of a finished run
def _check_stages(names: Iterable[str], flag: str) -> None:
    bad = [n for n in names if n not in STAGE_NAMES]
    if bad:
        raise ConfigError([f"{flag} {b}: unknown stage; use one of: {', '.join(STAGE_NAMES)}" for b in bad])


def _rerun(run_dir: Path, stage: str, overrides: list[str], needs_complete: tuple[str, ...]) -> RunResult:
    """Rerun one stage of an existing run, reusing its upstream stages (which must be complete)."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError([f"{run_dir}: not a run folder (no config.yaml); give <out>/<experiment> of a "
                           "finished `python -m pipeline run`"])
    old = _old_schema(run_dir)
    try:
        cfg = load_config(config_file, overrides)
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
    """The schema version of a run folder's manifests when it differs from this pipeline's. Raw JSON on
    purpose: the contract's loaders refuse incomplete or foreign manifests, which is what is probed here."""
    for manifest in sorted(run_dir.glob("*/manifest.json")):
        try:
            version = json.loads(manifest.read_text()).get("schema_version")
        except (OSError, ValueError):
            continue
        if version != SCHEMA_VERSION:
            return str(version)
    return None


def _schema_hint(run_dir: Path, old: str) -> str:
    return (f"{run_dir} was written by an older pipeline (run schema {old}, this one writes {SCHEMA_VERSION}); "
            f"rebuild it with `python -m pipeline run <its config> --out {run_dir.parent}` "
            "(its old stage folders are never read)")
