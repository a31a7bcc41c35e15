"""One failed artifact does not sink the run: the export stage completes with the verified formats,
benchmark and report still run and show the failure first, summary.json records it, and the command
exits 1, also when the run is repeated from the cache."""

from __future__ import annotations

import json

import pytest

import exporters.export as export_mod
from benchmarks.harness import format_table
from exporters.export import export_all, failure_line
from exporters.formats import ExportOptions
from exporters.metadata import base_meta
from exporters.parity import ParityError, ParityResult
from pipeline.cli import main
from pipeline.contract import Run, read_metrics
from tests.conftest import TINY_SINUSOID, make_tiny_student, tiny_images

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# The tiny sinusoid run (about 45 s on two cores) with one int8 and one float student format, one
# teacher format, and a benchmark of one short repeat on torch and onnxruntime.
RUN = [*[o for o in TINY_SINUSOID if not o.startswith("export.formats")], "export.formats=[onnx_fp32,onnx_int8]",
       "benchmark.backends=[torch,onnxruntime]", "benchmark.threads=[1]", "benchmark.repeats=1",
       "benchmark.warmup=0", "benchmark.min_runs=1", "benchmark.min_time_s=0",
       "export.teacher_formats=[onnx_fp32]", "benchmark.profile=false"]
STUDENT_LINE = "onnx_int8: parity failed: max 8.19 mean 1.02 (tol 4.5 / 1)"


def _force_failures(monkeypatch) -> None:
    """The student's onnx_int8 fails parity by 8.19 degrees; the teacher's onnx_fp32 fails to convert."""
    real_parity, real_exporter = export_mod.check_parity, export_mod.exporter

    def parity(fmt, path, meta, *args, **kwargs):
        if fmt.name == "onnx_int8":
            return ParityResult("onnx_int8", "failed", "max abs diff 8.19 > tolerance 4.5", 8.19, 1.02, 4.5,
                                "onnxruntime (forced)", "int8 (PT2E-converted) torch model", 8)
        return real_parity(fmt, path, meta, *args, **kwargs)

    def exporter(fmt):
        def export(model, inputs, out_dir, options):
            if options.meta["name"].endswith("-teacher"):
                raise RuntimeError("converter crashed (forced)")
            return real_exporter(fmt)(model, inputs, out_dir, options)
        return export

    monkeypatch.setattr(export_mod, "check_parity", parity)
    monkeypatch.setattr(export_mod, "exporter", exporter)


def test_failure_line_and_strict_flag(tmp_path, monkeypatch):
    rec = {"format": "onnx_int8", "reason": "x", "parity": {"status": "failed", "max_abs": 8.19, "mean_abs": 1.02,
                                                           "tolerance": 4.5}}
    assert failure_line(rec) == STUDENT_LINE
    assert failure_line({"format": "tflite_fp32", "reason": "export: ValueError: bad op\n  long trace",
                         "parity": None}) == "tflite_fp32: export: ValueError: bad op"
    monkeypatch.setattr(export_mod, "check_parity", lambda fmt, *a, **k: ParityResult(
        fmt.name, "failed", "forced", 1.0, 0.5, 1e-3, "onnxruntime"))
    model, x = make_tiny_student("mobile_xs", 0.5), tiny_images(2, 0)
    meta = base_meta(name="t", version="0", description="t", author="t", license="MIT", config_hash="0")
    report = export_all(model, None, x, tmp_path / "lax", ["onnx_fp32"], meta, ExportOptions(), strict=False)
    assert report["failures"] == ["onnx_fp32: parity failed: max 1 mean 0.5 (tol 0.001)"]
    with pytest.raises(ParityError, match="onnx_fp32"):  # the standalone default still raises
        export_all(model, None, x, tmp_path / "strict", ["onnx_fp32"], meta, ExportOptions())


@pytest.mark.slow
def test_failed_artifact_is_recorded_and_the_run_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    _force_failures(monkeypatch)
    assert main(["run", "sinusoid", *RUN, "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"FAILED export: {STUDENT_LINE}" in printed and "--force export" in printed
    assert "FAILED export: teacher/onnx_fp32: export: RuntimeError" in printed

    summary = json.loads((out / "sinusoid" / "summary.json").read_text())
    stages = summary["stages"]
    assert all(e["status"] == "ran" for e in stages.values()), stages
    assert stages["export"]["failures"][0] == STUDENT_LINE
    assert stages["export"]["failures"][1].startswith("teacher/onnx_fp32: export: RuntimeError: converter crashed")
    assert "failures" not in stages["benchmark"]  # it times what export verified; the failures are export's
    assert "features" in summary["host"] and summary["host"]["runtimes"]["torch"]

    run = Run.open(out / "sinusoid")
    export_dir, bench_dir, report_dir = run.stage("export"), run.stage("benchmark"), run.stage("report")
    report = json.loads((export_dir / "export_report.json").read_text())
    rec = report["artifacts"]["onnx_int8"]
    assert rec["status"] == "failed" and rec["parity"]["max_abs"] == 8.19 and "8.19" in rec["reason"]
    assert report["failures"] == [STUDENT_LINE]
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert "onnx_int8" not in manifest["artifacts"] and "onnx_fp32" in manifest["artifacts"]
    assert read_metrics(export_dir).failures[0] == STUDENT_LINE

    bench = json.loads((bench_dir / "benchmark.json").read_text())
    failed = {f["artifact"]: f for f in bench["failures"]}
    assert set(failed) == {"student/onnx_int8", "teacher/onnx_fp32"}
    assert failed["student/onnx_int8"]["stage"] == "export" and "max 8.19" in failed["student/onnx_int8"]["reason"]
    assert failed["teacher/onnx_fp32"]["stage"] == "export"
    timed = {r["artifact"] for r in bench["rows"]}
    assert "student/onnx_fp32" in timed and not timed & set(failed)  # never an unverified artifact
    table = format_table(bench).splitlines()
    assert table[0].startswith("FAILED student/onnx_int8") and table[1].startswith("FAILED teacher/onnx_fp32")

    page = (report_dir / "report.html").read_text()
    alert, headline = page.find('class="alert"'), page.find('id="headline"')
    assert 0 < alert < headline, "the failure block must come before the headline"
    assert f"student/{STUDENT_LINE}" in page[alert:headline] and "teacher/onnx_fp32" in page[alert:headline]
    md = (report_dir / "report.md").read_text()
    assert 0 < md.find("Failed artifacts") < md.find("## Headline") and f"student/{STUDENT_LINE}" in md
    assert read_metrics(report_dir).sections[:2] == ["failures", "headline"]

    # Repeated as is (the failing conversions no longer forced): everything cached, still exit 1.
    monkeypatch.undo()
    assert main(["run", "sinusoid", *RUN, "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"FAILED export: {STUDENT_LINE}" in printed and "--force export" in printed
    again = json.loads((out / "sinusoid" / "summary.json").read_text())["stages"]
    assert {e["status"] for e in again.values()} == {"cached"} and again["export"]["failures"][0] == STUDENT_LINE
