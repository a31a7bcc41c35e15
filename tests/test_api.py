"""The Python API (pipeline.api): a whole run, a re-export, a report and typed outputs from a notebook, the
same errors the command line turns into exit code 2, and the command line calling it."""

from __future__ import annotations

import pytest

from pipeline import api
from pipeline.cli import main
from pipeline.contract import exported_artifacts, load_benchmark
from pipeline.schema import ConfigError
from tests.conftest import TINY_SINUSOID

# every stage on the 1-D toy in seconds; the benchmark times one short repeat on torch and onnxruntime
TINY = [*TINY_SINUSOID, "benchmark.backends=[torch,onnxruntime]", "benchmark.threads=[1]", "benchmark.repeats=1",
        "benchmark.warmup=1", "benchmark.min_runs=2", "benchmark.min_time_s=0", "benchmark.profile=false",
        "export.teacher_formats=[onnx_fp32]"]


def test_run_export_bench_report_from_python(tmp_path):
    result = api.run("sinusoid", TINY, out=tmp_path)
    assert not result.failed and not result.failures, result.summary
    run = api.open_run(result.run_dir)
    assert run.metrics("distill").test_mae > 0 and run.metrics("qat").test_mae > 0
    assert set(run.metrics("export").artifacts) == {"onnx_fp32"}
    assert set(run.metrics("export").teacher_artifacts) == {"teacher/onnx_fp32"}
    exported = exported_artifacts(run.stage("export"), "teacher")  # the teacher's own file, not the student's
    assert exported["onnx_fp32"].parent.parent.name == "teacher" and exported["onnx_fp32"].is_file()
    sizes = run.metrics("export")
    assert sizes.teacher_artifacts["teacher/onnx_fp32"].size_bytes > sizes.artifacts["onnx_fp32"].size_bytes
    assert (run.stage("report") / "report.html").is_file()

    again = api.run("sinusoid", TINY, out=tmp_path)  # nothing changed: every stage from the cache
    assert {e["status"] for e in again.summary["stages"].values()} == {"cached"}

    exported = api.export(result.run_dir, formats=["onnx_fp32", "onnx_int8"])
    assert exported.summary["stages"]["export"]["status"] == "ran"
    assert set(api.open_run(result.run_dir).metrics("export").artifacts) == {"onnx_fp32", "onnx_int8"}

    benched = api.bench(result.run_dir, backends=["onnxruntime"], threads=[1])
    assert benched.summary["stages"]["benchmark"]["status"] == "ran"
    bench = load_benchmark(api.open_run(result.run_dir).stage("benchmark"))
    assert {r["backend"] for r in bench["rows"]} == {"onnxruntime"}
    assert {"student/onnx_int8", "teacher/onnx_fp32"} <= {r["artifact"] for r in bench["rows"]}
    size = {r["artifact"]: r["size_bytes"] for r in bench["rows"]}
    assert size["teacher/onnx_fp32"] > size["student/onnx_fp32"]  # each model's own artifact is timed

    reported = api.report(result.run_dir)
    assert reported.summary["stages"]["report"]["status"] in ("ran", "cached")


def test_api_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        api.run("sinusoid", ["data.nope=1"], out=tmp_path)
    with pytest.raises(ConfigError, match="--force nope: unknown stage"):
        api.run("sinusoid", TINY, out=tmp_path, force=["nope"])
    with pytest.raises(ConfigError, match="not a run folder"):
        api.export(tmp_path)
    with pytest.raises(ConfigError, match="not a student architecture"):
        api.sweep("sinusoid", ["cnn_m"])
    with pytest.raises(ConfigError, match="no ablation.json"):
        api.report(tmp_path, ablation=tmp_path)


def test_cli_commands_call_the_api(monkeypatch, tmp_path):
    """The command line is a thin layer: `export` and `bench` hand their flags to the API functions."""
    calls = {}

    class Result:
        summary = {"stages": {}}
        failed, failures, user_errors, writer = [], {}, [], True

    def record(name):
        def fn(*args, **kwargs):
            calls[name] = (args, kwargs)
            return Result()
        return fn

    monkeypatch.setattr(api, "export", record("export"))
    monkeypatch.setattr(api, "bench", record("bench"))
    monkeypatch.setattr("pipeline.cli.common.print_summary", lambda result: None)
    assert main(["export", str(tmp_path), "--formats", "onnx_fp32", "tflite_int8", "--int8-io"]) == 0
    assert calls["export"] == ((str(tmp_path),), {"formats": ["onnx_fp32", "tflite_int8"], "int8_io": True})
    assert main(["bench", str(tmp_path), "--threads", "1,2", "--backends", "litert", "--repeats", "3"]) == 0
    assert calls["bench"][1] == {"backends": ["litert"], "threads": [1, 2], "repeats": 3, "android_serial": None,
                                 "benchmark_model": None}
    assert main(["bench", str(tmp_path), "--threads", "one"]) == 2
