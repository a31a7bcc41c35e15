"""Export stage: write every configured artifact (ONNX, TFLite, CoreML at each precision), check each
against the PyTorch model it came from on clean test images, and record it in ``export_report.json``.

Float formats come from the distilled single-output student, int8 formats from the QAT stage's
converted model (skipped, with the reason, when the qat stage is switched off). The teacher is exported
too, to ``export.teacher_formats`` under ``teacher/`` with the same exporters and checks, so that the
benchmark measures student-vs-teacher ratios on artifacts it did not have to make itself.

A format that fails (conversion, metadata or parity) does not fail the stage: after a long run the
verified artifacts still go to the benchmark and the report. The failed one stays in
``export_report.json`` with its figures, is left out of the manifest's artifact map (so nothing
downstream times or ships an unverified artifact), and is listed in ``ExportMetrics.failures`` (a teacher
format as ``teacher/<format>: ...``), which the orchestrator turns into exit code 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from exporters.export import export_all, failure_line
from exporters.formats import ExportOptions
from exporters.metadata import base_meta
from pipeline import __version__
from pipeline.config import Config
from pipeline.contract import ExportMetrics, as_metrics, from_dict, load_int8, load_student, load_teacher
from pipeline.data.dataset import load_dataset
from pipeline.data.sources import SOURCES
from pipeline.runs import StageContext
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput
from pipeline.train import to_model_input

log = logging.getLogger(__name__)


def config_slice(cfg: Config) -> dict:
    return {"export": to_dict(cfg.export)}


TEACHER_DIR = "teacher"


def _records(report: dict, prefix: str = "") -> tuple[dict, dict]:
    """(metrics per artifact, manifest paths of the artifacts that did not fail), keys ``prefix + format``;
    ``prefix`` is the folder export_all wrote into, relative to the stage's."""
    metrics, paths = {}, {}
    for name, rec in report["artifacts"].items():
        parity = rec.get("parity") or {}
        metrics[prefix + name] = {"status": rec["status"], "size_bytes": rec.get("size_bytes"),
                                  "max_abs_diff": parity.get("max_abs"), "mean_abs_diff": parity.get("mean_abs"),
                                  "tolerance": parity.get("tolerance"), "reason": rec.get("reason")}
        if rec.get("path") and rec["status"] != "failed":
            paths[prefix + name] = prefix + Path(rec["path"]).as_posix()  # export_all records it relative to out_dir
    return metrics, paths


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    dev = ctx.device
    data = load_dataset(ctx.upstream["data"].path)
    float_model = load_student(ctx.upstream["distill"].path, "cpu")
    qat_dir = ctx.upstream["qat"]
    int8_model = load_int8(qat_dir.path) if qat_dir.is_complete() else None
    test_x = data.x("test")
    # Evenly spaced clean test samples: real inputs across the pose range, not zeros.
    idx = np.linspace(0, len(test_x) - 1, min(cfg.export.parity_samples, len(test_x))).astype(int)
    inputs = to_model_input(torch.from_numpy(test_x[idx]), dev).cpu().contiguous()
    source = SOURCES[cfg.data.source]
    names, units = data.output_names, data.stats["units"]
    crop = source.crop(cfg.data).framing() if source.crop else None
    common = dict(version=__version__, author="tor-distill-pipeline", license="Apache-2.0",
                  config_hash=ctx.dir.name.rsplit("-", 1)[-1], output_names=names, units=units, crop=crop)
    meta = base_meta(name=f"{cfg.experiment}-student", description=f"{cfg.distill.arch} student "
                     f"({cfg.distill.method}, {units}) for {', '.join(names)}", **common)
    low, high = source.label_range(cfg.data)
    options = ExportOptions(int8_io=cfg.export.int8_io, output_range=(float(np.min(low)), float(np.max(high))))
    report = export_all(float_model, int8_model, inputs, ctx.dir, list(cfg.export.formats), meta, options,
                        strict=False)
    student_metrics, artifacts = _records(report)
    failures = list(report["failures"])
    teacher_metrics: dict = {}
    if cfg.export.teacher_formats:
        teacher_dir = ctx.dir / TEACHER_DIR
        t_meta = base_meta(name=f"{cfg.experiment}-teacher", description=f"{cfg.teacher.arch} teacher ({units}) "
                           f"for {', '.join(names)}", **common)
        t_report = export_all(load_teacher(ctx.upstream["teacher"].path), None, inputs, teacher_dir,
                              list(cfg.export.teacher_formats), t_meta, ExportOptions(), strict=False)
        teacher_metrics, t_paths = _records(t_report, f"{TEACHER_DIR}/")
        artifacts.update(t_paths)
        artifacts["teacher_report"] = f"{TEACHER_DIR}/export_report.json"
        failed = [r for r in t_report["artifacts"].values() if r["status"] == "failed"]
        failures += [f"{TEACHER_DIR}/{failure_line(r)}" for r in failed]
    artifacts["report"] = "export_report.json"
    counts: dict[str, int] = {}
    for a in student_metrics.values():
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    metrics = {"artifacts": student_metrics, "teacher_artifacts": teacher_metrics, "status_counts": counts,
               "failures": failures}
    return StageOutput(as_metrics(from_dict(ExportMetrics, metrics)), artifacts)


STAGE = Stage("export", ("data", "teacher", "distill", "qat"), config_slice, run)
