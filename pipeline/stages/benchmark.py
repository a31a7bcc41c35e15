"""Benchmark stage: latency and own clean-test error of every artifact, on the host and on a phone.

Measures the student's exported artifacts (found through the export stage's manifest), the torch
models they came from (float student, converted int8 student, teacher), and the teacher exported
here to ``benchmark.teacher_formats`` (so every student-vs-teacher ratio is measured in one run), on
each backend in ``benchmark.backends`` at each thread count in ``benchmark.threads``. Android rows
run ``benchmark_model`` over adb when ``benchmark.android.benchmark_model`` names a binary.
Writes ``benchmark.json``, ``benchmark.csv`` and ``teacher/`` (its artifacts and export report).

Artifacts that failed export are not timed, and ``benchmark.json`` lists them (``failures``) first:
the student's from the export stage, the teacher's from this stage's own export (a failed teacher
format is logged and skipped, never the end of the benchmark; it is in ``BenchmarkMetrics.failures``).
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
from benchmarks.timing import TimingPlan
from exporters.export import export_all, failure_line
from exporters.formats import FORMATS, ExportOptions
from exporters.metadata import META_FILE, base_meta
from pipeline import __version__
from pipeline.config import Config
from pipeline.contract import BenchmarkMetrics, as_metrics, load_export_report, read_metrics
from pipeline.data.dataset import load_dataset
from pipeline.device import DeviceInfo
from pipeline.models.complexity import count_macs, count_params
from pipeline.runs import StageContext
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput, StageSkipped
from pipeline.train import to_model_input

log = logging.getLogger(__name__)

TEACHER_DIR = "teacher"
PARITY_SAMPLES = 32


def config_slice(cfg: Config) -> dict:
    return {"benchmark": to_dict(cfg.benchmark)}


def _export_teacher(cfg: Config, teacher: torch.nn.Module, x: np.ndarray, names: list[str], units: str,
                    out: Path) -> tuple[dict[str, Path], list[dict], dict]:
    """Export the teacher (float formats only) with the same exporters and parity checks as the student:
    (verified or exported artifacts by format, the failed ones as ``{"artifact", "stage", "reason"}``,
    the export report)."""
    idx = np.linspace(0, len(x) - 1, min(PARITY_SAMPLES, len(x))).astype(int)
    meta = base_meta(name=f"{cfg.experiment}-teacher", version=__version__,
                     description=f"{cfg.teacher.arch} teacher ({units}) for {', '.join(names)}",
                     author="tor-distill-pipeline", license="Apache-2.0", config_hash=out.parent.name.rsplit("-", 1)[-1],
                     output_names=names, units=units)
    report = export_all(teacher, None, torch.from_numpy(np.ascontiguousarray(x[idx])), out,
                        list(cfg.benchmark.teacher_formats), meta, ExportOptions(), strict=False)
    recs = report["artifacts"].values()
    failed = [_failure("teacher", failure_line(r), "benchmark (teacher export)") for r in recs if r["status"] == "failed"]
    for f in failed:
        log.error("%s not benchmarked: %s (details in %s)", f["artifact"], f["reason"], out / "export_report.json")
    return ({r["format"]: out / r["path"] for r in recs if r.get("path") and r["status"] != "failed"}, failed,
            report)


def _failure(model: str, line: str, stage: str) -> dict:
    """A failure_line ("onnx_int8: parity failed: ...") as benchmark.json's record of an untimed artifact."""
    fmt, _, reason = line.partition(": ")
    return {"artifact": f"{model}/{fmt}", "stage": stage, "reason": reason}


def _export_failures(ctx: StageContext) -> list[dict]:
    """The student formats the export stage failed to verify (left out of its artifact map)."""
    return [_failure("student", line, "export") for line in read_metrics(ctx.upstream["export"].path).failures]


def _artifact_target(model: str, name: str, path: Path, params: int, macs: int, report: dict) -> Target:
    """``report``: the export report the artifact is in (its status says whether parity ran)."""
    fmt = FORMATS[name]
    verified = (report["artifacts"].get(name) or {}).get("status") == "verified"
    return Target(f"{model}/{name}", model, name, fmt.precision, FAMILY_BACKEND[fmt.family], path,
                  path.parent / META_FILE, params, macs, verified=verified)


def _targets(cfg: Config, ctx: StageContext, x: np.ndarray, names: list[str], units: str
             ) -> tuple[list[Target], dict[str, torch.nn.Module], list[dict]]:
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
    exported = (up["export"].manifest() or {}).get("artifacts", {})
    student_report = load_export_report(up["export"].path) if exported else {"artifacts": {}}
    for name, rel in exported.items():
        if name in FORMATS:
            targets.append(_artifact_target("student", name, up["export"].path / rel, s_params, s_macs,
                                            student_report))
    teacher_artifacts, failed, teacher_report = _export_teacher(cfg, teacher, x, names, units, ctx.dir / TEACHER_DIR)
    for name, path in teacher_artifacts.items():
        targets.append(_artifact_target("teacher", name, path, t_params, t_macs, teacher_report))
    wanted = set(cfg.benchmark.backends)
    return [t for t in targets if t.backend in wanted], torch_models, failed


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


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    if not cfg.benchmark.enabled:
        raise StageSkipped("benchmark.enabled is false")
    b = cfg.benchmark
    data = load_dataset(ctx.upstream["data"].path)
    cpu = DeviceInfo(torch.device("cpu"), torch.get_num_threads())
    x = np.ascontiguousarray(to_model_input(torch.from_numpy(np.asarray(data.x("test"))), cpu).numpy())
    y, names = data.y("test"), data.output_names
    targets, torch_models, teacher_failed = _targets(cfg, ctx, x, names, data.stats["units"])
    errors = _own_errors(targets, torch_models, x, y, names)
    plan = TimingPlan(warmup=b.warmup, min_runs=b.min_runs, min_time_s=b.min_time_s, repeats=b.repeats)
    result = run_benchmark(targets, list(b.threads), plan, errors, b.profile, _android_rows(cfg, targets, ctx),
                           failures=_export_failures(ctx) + teacher_failed)
    write_results(result, ctx.dir)
    log.info("benchmark results:\n%s", format_table(result))
    artifacts = {"benchmark_json": "benchmark.json", "benchmark_csv": "benchmark.csv"}
    # only this stage's own failures: the student's are the export stage's, counted there
    metrics = BenchmarkMetrics(result["headline"], result["host"],
                               [f"{f['artifact']}: {f['reason']}" for f in teacher_failed])
    return StageOutput(as_metrics(metrics), artifacts)


STAGE = Stage("benchmark", ("data", "teacher", "distill", "qat", "export"), config_slice, run)
