"""Benchmark stage: latency and own clean-test error of every artifact, on the host and on a phone.

Measures the student's and the teacher's exported artifacts (found through the export stage's
manifest) and the torch models they came from (float student, converted int8 student, teacher), on
each backend in ``benchmark.backends`` at each thread count in ``benchmark.threads``, so every
student-vs-teacher ratio is measured in one run. Android rows run ``benchmark_model`` over adb when
``benchmark.android.benchmark_model`` names a binary. Writes ``benchmark.json`` and ``benchmark.csv``.

On a head-pose run whose data source frames its crops as a face detector does (a crop spec), the
real-photo check (benchmarks/real_faces.py) runs too: the float student, the shipped int8 TFLite and
the teacher on the real photos that ship with installed packages, through the shipped detector and the
run's crop spec. It writes ``real_photos.json`` and ``real_photos.png`` (the photos with the int8
model's axes drawn); its worst figures per model are this stage's ``real_photos`` metrics.

Artifacts that failed export are not timed, and ``benchmark.json`` lists them (``failures``) first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import artifact_errors, torch_errors
from benchmarks.backends import FAMILY_BACKEND
from benchmarks.harness import Target, format_table, run_benchmark, write_results
from benchmarks.models import load_torch_model
from benchmarks.real_faces import headline as photo_headline
from benchmarks.real_faces import run_check
from benchmarks.real_faces import table as photo_table
from benchmarks.timing import TimingPlan
from exporters.formats import FORMATS
from exporters.metadata import META_FILE
from pipeline.config import Config
from pipeline.contract import (
    BenchmarkMetrics,
    as_metrics,
    exported_artifacts,
    load_export_report,
    read_metrics,
)
from pipeline.data.dataset import load_dataset
from pipeline.data.sources import SOURCES
from pipeline.device import DeviceInfo
from pipeline.models.complexity import count_macs, count_params
from pipeline.runs import StageContext, atomic_write_bytes, atomic_write_json
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput, StageSkipped
from pipeline.train import to_model_input

log = logging.getLogger(__name__)


def config_slice(cfg: Config) -> dict:
    return {"benchmark": to_dict(cfg.benchmark)}


def _failure(model: str, line: str, stage: str) -> dict:
    """A failure_line ("onnx_int8: parity failed: ...") as benchmark.json's record of an untimed artifact."""
    fmt, _, reason = line.partition(": ")
    return {"artifact": f"{model}/{fmt}", "stage": stage, "reason": reason}


def _export_failures(ctx: StageContext) -> list[dict]:
    """The formats the export stage failed to verify (left out of its artifact map): the student's are
    named by format, the teacher's as ``teacher/<format>``."""
    failures = []
    for line in read_metrics(ctx.upstream["export"].path).failures:
        model, _, rest = line.partition("/") if line.startswith("teacher/") else ("student", "", line)
        failures.append(_failure(model, rest, "export"))
    return failures


def _artifact_target(model: str, name: str, path: Path, params: int, macs: int, report: dict) -> Target:
    """``report``: the export report the artifact is in (its status says whether parity ran)."""
    fmt = FORMATS[name]
    verified = (report["artifacts"].get(name) or {}).get("status") == "verified"
    return Target(f"{model}/{name}", model, name, fmt.precision, FAMILY_BACKEND[fmt.family], path,
                  path.parent / META_FILE, params, macs, verified=verified)


def _targets(cfg: Config, ctx: StageContext, x: np.ndarray) -> tuple[list[Target], dict[str, torch.nn.Module]]:
    up = ctx.upstream
    shape = [1, *x.shape[1:]]
    example = torch.from_numpy(np.ascontiguousarray(x[:1]))
    torch_models = {"student/torch_fp32": load_torch_model("torch_fp32", up["distill"].path),
                    "teacher/torch_teacher": load_torch_model("torch_teacher", up["teacher"].path)}
    if up["qat"].is_complete():
        torch_models["student/torch_int8"] = load_torch_model("torch_int8", up["qat"].path)
    student, teacher = torch_models["student/torch_fp32"], torch_models["teacher/torch_teacher"]
    s_params, s_macs = count_params(student), count_macs(student, example)
    t_params, t_macs = count_params(teacher), count_macs(teacher, example)
    targets = [Target("student/torch_fp32", "student", "torch_fp32", "fp32", "torch", up["distill"].path,
                      params=s_params, macs=s_macs, shape=shape)]
    if "student/torch_int8" in torch_models:
        targets.append(Target("student/torch_int8", "student", "torch_int8", "int8", "torch", up["qat"].path,
                              params=s_params, macs=s_macs, shape=shape))
    targets.append(Target("teacher/torch_teacher", "teacher", "torch_teacher", "fp32", "torch",
                          up["teacher"].path, params=t_params, macs=t_macs, shape=shape))
    for model, params, macs in (("student", s_params, s_macs), ("teacher", t_params, t_macs)):
        found = exported_artifacts(up["export"].path, model)
        report = load_export_report(up["export"].path, model) if found else {"artifacts": {}}
        for name, path in found.items():
            targets.append(_artifact_target(model, name, path, params, macs, report))
    wanted = set(cfg.benchmark.backends)
    return [t for t in targets if t.backend in wanted], torch_models


def _own_errors(targets: list[Target], torch_models: dict, x: np.ndarray, y: np.ndarray, names: list[str]
                ) -> dict[str, dict]:
    """Each target's own clean-test error; a target whose runtime fails gets the reason instead."""
    out: dict[str, dict] = {}
    for t in targets:
        if t.artifact in out:
            continue
        try:
            if t.backend == "torch":
                out[t.artifact] = torch_errors(torch_models[t.artifact], x, y, names)
            else:
                out[t.artifact] = artifact_errors(t.format, t.path, t.meta, x, y, names, threads=2)
        except Exception as exc:  # a runtime that cannot run the artifact is a row status, not a crash
            out[t.artifact] = {"error_status": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
            log.warning("%s: own test error not measured: %s", t.artifact, exc)
    return out


def _android_rows(cfg: Config, targets: list[Target], ctx: StageContext) -> list[dict]:
    a = cfg.benchmark.android
    tflite = [t for t in targets if t.backend == "litert"]
    if "android" not in cfg.benchmark.backends:
        return []
    if not a.benchmark_model:
        return [{"artifact": t.artifact, "model": t.model, "format": t.format, "precision": t.precision,
                 "backend": "android", "threads": n, "device": "android", "size_bytes": t.size_bytes,
                 "status": "skipped: no benchmark_model binary (set benchmark.android.benchmark_model, "
                           "or pass --benchmark-model to `python -m pipeline bench`)"}
                for t in tflite for n in cfg.benchmark.threads]
    from benchmarks.android import AndroidTarget, run_android

    target = AndroidTarget(a.serial or None, Path(a.benchmark_model), a.delegate, a.warmup_runs, a.num_runs,
                           a.taskset or None)
    rows = []
    for t in tflite:
        for n in cfg.benchmark.threads:
            row = run_android(t.path, target, n, log_dir=ctx.dir / "android")
            row.update(artifact=t.artifact, model=t.model, format=t.format, precision=t.precision,
                       size_bytes=t.size_bytes, p50_ms=row.get("latency_p50_ms"))
            rows.append(row)
    return rows


POSE_OUTPUTS = {"yaw", "pitch", "roll"}


def _real_photos(cfg: Config, ctx: StageContext, names: list[str]) -> tuple[dict, dict[str, str]]:
    """(metrics, artifacts) of the real-photo check; metrics say why when it does not apply."""
    if not cfg.benchmark.real_photos:
        return {"skipped": "benchmark.real_photos is false"}, {}
    if SOURCES[cfg.data.source].crop is None or not POSE_OUTPUTS <= set(names):
        return {"skipped": f"data source {cfg.data.source!r} has no face-detector crop spec or no yaw/pitch/roll "
                           "outputs"}, {}
    stages = {k: ctx.upstream[k].path for k in ("distill", "teacher", "export")}
    try:
        result, png = run_check(stages)
    except (FileNotFoundError, ValueError) as exc:  # e.g. the shipped format was not exported
        log.warning("real-photo check not run: %s", exc)
        return {"skipped": str(exc)}, {}
    atomic_write_json(ctx.dir / "real_photos.json", result)
    atomic_write_bytes(ctx.dir / "real_photos.png", png)
    log.info("real-photo check:\n%s", photo_table(result))
    return photo_headline(result), {"real_photos_json": "real_photos.json", "real_photos_png": "real_photos.png"}


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    if not cfg.benchmark.enabled:
        raise StageSkipped("benchmark.enabled is false")
    b = cfg.benchmark
    data = load_dataset(ctx.upstream["data"].path)
    cpu = DeviceInfo(torch.device("cpu"), torch.get_num_threads())
    x = np.ascontiguousarray(to_model_input(torch.from_numpy(np.asarray(data.x("test"))), cpu).numpy())
    y, names = data.y("test"), data.output_names
    targets, torch_models = _targets(cfg, ctx, x)
    errors = _own_errors(targets, torch_models, x, y, names)
    plan = TimingPlan(warmup=b.warmup, min_runs=b.min_runs, min_time_s=b.min_time_s, repeats=b.repeats)
    result = run_benchmark(targets, list(b.threads), plan, errors, b.profile, _android_rows(cfg, targets, ctx),
                           failures=_export_failures(ctx))
    write_results(result, ctx.dir)
    log.info("benchmark results:\n%s", format_table(result))
    artifacts = {"benchmark_json": "benchmark.json", "benchmark_csv": "benchmark.csv"}
    photos, photo_files = _real_photos(cfg, ctx, names)
    artifacts.update(photo_files)
    # no failures of its own: the artifacts it could not time are the export stage's, counted there
    metrics = BenchmarkMetrics(result["headline"], result["host"], [], photos)
    return StageOutput(as_metrics(metrics), artifacts)


STAGE = Stage("benchmark", ("data", "teacher", "distill", "qat", "export"), config_slice, run)
