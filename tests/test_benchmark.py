"""The host benchmark: timing statistics, one worker per artifact, own-error, failing rows, ratios."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.accuracy import artifact_errors, torch_errors
from benchmarks.backends import FAMILY_BACKEND
from benchmarks.harness import (
    LEGEND,
    Target,
    accuracy_violations,
    format_table,
    headline,
    run_benchmark,
    write_results,
)
from benchmarks.timing import TimingPlan, latency_stats, time_calls, time_repeated
from benchmarks.worker import summarize_ort_profile
from exporters.export import export_all
from exporters.formats import ExportOptions
from exporters.metadata import META_FILE, base_meta
from pipeline.device import ISA_FEATURES, RUNTIME_DISTRIBUTIONS, describe_host, host_description
from tests.conftest import make_tiny_student, tiny_images

PLAN = TimingPlan(warmup=3, min_runs=15, min_time_s=0.01, repeats=3)


def test_latency_stats_exact() -> None:
    s = latency_stats(np.array([1, 2, 3, 4, 100], dtype=float) * 1e-3)
    assert s["count"] == 5 and s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(100)
    assert s["p50_ms"] == pytest.approx(3) and s["mean_ms"] == pytest.approx(22)
    assert s["p90_ms"] == pytest.approx(61.6) and s["p99_ms"] == pytest.approx(96.16)


def test_runs_bounded_by_count_and_time() -> None:
    calls = []
    assert len(time_calls(lambda: calls.append(1), warmup=4, min_runs=7, min_time_s=0.0)) == 7
    assert len(calls) == 11  # warm-up calls are made but not timed
    n = len(time_calls(lambda: None, warmup=0, min_runs=1, min_time_s=0.05))
    assert n > 10  # a trivial call repeats until the minimum time is spent


def test_repeats_and_spread() -> None:
    res = time_repeated(lambda: sum(range(200)), PLAN)
    lat = res["latency"]
    assert len(res["repeats"]) == PLAN.repeats == lat["repeats"]
    assert lat["runs"] == sum(r["count"] for r in res["repeats"]) >= PLAN.repeats * PLAN.min_runs
    assert lat["p50_min_ms"] <= lat["p50_ms"] <= lat["p50_max_ms"]
    for r in res["repeats"]:
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_ort_profile_summary(tmp_path: Path) -> None:
    trace = [{"cat": "Node", "name": "conv_a_kernel_time", "dur": 30, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "conv_b_kernel_time", "dur": 10, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "conv_a_kernel_time", "dur": 30, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "clip_kernel_time", "dur": 20, "args": {"op_name": "Clip"}},
             {"cat": "Session", "name": "model_run", "dur": 999, "args": {}}]
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    rows = summarize_ort_profile(str(path), runs=2)
    assert rows[0] == {"op": "Conv", "nodes": 2, "us_per_run": 35.0, "percent": 77.8}
    assert rows[1] == {"op": "Clip", "nodes": 1, "us_per_run": 10.0, "percent": 22.2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny student exported to ONNX and TFLite, plus clean labels it is scored against."""
    model = make_tiny_student("mobile_xs", width_mult=0.5)
    out = tmp_path_factory.mktemp("bench")
    meta = base_meta(name="tiny", version="0", description="tiny", author="tests", license="Apache-2.0",
                     config_hash="0")
    report = export_all(model, None, tiny_images(8, 1), out, ["onnx_fp32", "tflite_fp32", "executorch_fp32"], meta,
                        ExportOptions())
    x = tiny_images(40, 2).numpy()
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy() + 1.0  # labels 1 degree off the model: MAE exactly 1
    targets = [Target(f"student/{n}", "student", n, "fp32", FAMILY_BACKEND[rec["family"]],
                      out / rec["path"], out / rec["path"].rsplit("/", 1)[0] / META_FILE, params=1000, macs=10 ** 6)
               for n, rec in report["artifacts"].items()]
    return model, targets, x, y, out


def test_own_error_is_the_artifacts(tiny_run) -> None:
    model, targets, x, y, _ = tiny_run
    names = ["yaw", "pitch", "roll"]
    assert torch_errors(model, x, y, names)["test_mae"] == pytest.approx(1.0, abs=1e-4)
    for t in targets:
        err = artifact_errors(t.format, t.path, t.meta, x, y, names)
        assert err["test_mae"] == pytest.approx(1.0, abs=1e-3), t.format
        assert set(err["test_mae_per_output"]) == set(names)


def test_host_benchmark_rows(tiny_run, tmp_path: Path) -> None:
    _, targets, _, _, out = tiny_run
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    (tmp_path / META_FILE).write_text((targets[0].meta).read_text())
    bad = Target("student/broken", "student", "onnx_fp32", "fp32", "onnxruntime", broken, tmp_path / META_FILE)
    mac = Target("student/coreml_fp32", "student", "coreml_fp32", "fp32", "coreml", out / "nothing.mlpackage")
    errors = {t.artifact: {"test_mae": 1.0, "test_mae_per_output": {}} for t in targets}
    result = run_benchmark(targets + [bad, mac], [1], PLAN, errors, profile=True)
    rows = {r["artifact"]: r for r in result["rows"]}
    for t in targets:
        r = rows[t.artifact]
        assert r["status"] == "ok", r["status"]
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["p50_min_ms"] <= r["p50_ms"] <= r["p50_max_ms"]
        assert r["runs"] >= PLAN.repeats * PLAN.min_runs and r["repeats"] == PLAN.repeats
        assert r["macs_per_s"] == pytest.approx(1e6 / (r["p50_ms"] / 1e3), rel=1e-3)
        assert r["test_mae"] == 1.0 and r["size_bytes"] == t.path.stat().st_size
        # what deployers compare beyond latency: start-up cost, memory, throughput, and how far it got
        assert r["legend"] == "benchmarked" and r["fps"] == pytest.approx(1e3 / r["p50_ms"], rel=1e-3)
        assert r["load_ms"] > 0 and r["first_run_ms"] > 0 and r["import_ms"] >= 0
        assert 0 < r["idle_rss_mb"] < r["peak_rss_mb"]
        assert r["rss_increase_mb"] == pytest.approx(r["peak_rss_mb"] - r["idle_rss_mb"], abs=0.11)
    assert [p["op"] for p in rows["student/onnx_fp32"]["profile"]][0] == "Conv"
    assert rows["student/broken"]["status"].startswith("failed: worker exited")
    assert rows["student/broken"]["legend"].startswith("failed: worker exited")
    assert rows["student/coreml_fp32"]["status"].startswith("skipped: needs macOS")
    assert rows["student/coreml_fp32"]["legend"] == "verified" and "load_ms" not in rows["student/coreml_fp32"]
    assert float(result["host"]["matmul_peak_macs_per_s"]["1"]) > 1e8
    assert set(result["host"]) >= {"cpu", "features", "cores", "torch_threads", "runtimes", "onednn_max_cpu_isa"}
    assert result["failures"] == [] and isinstance(result["headline"]["int8_notes"], list)
    json_path, csv_path = write_results(result, tmp_path)
    assert len(csv_path.read_text().splitlines()) == 1 + len(result["rows"])
    assert json.loads(json_path.read_text())["rows"][0]["artifact"] == targets[0].artifact
    table = format_table(result)
    assert "student/broken" in table and "load ms" in table and "peak MB" in table
    assert all(k in table for k in LEGEND)
    # the CI threshold: every artifact is at MAE 1.0 here
    assert accuracy_violations(result, 1.5) == []
    over = accuracy_violations(result, 0.5)
    assert len(over) == len(targets)  # each scored artifact once (the broken and macOS ones were not scored)
    assert "student/onnx_fp32: own clean-test MAE 1 > --max-error 0.5" in over


def test_accuracy_threshold_counts_each_artifact_once_and_unmeasured_errors() -> None:
    rows = [{"artifact": "student/a", "test_mae": 2.0}, {"artifact": "student/a", "test_mae": 2.0},
            {"artifact": "student/b", "test_mae": 0.5},
            {"artifact": "student/c", "test_mae": None, "error_status": "failed: RuntimeError: bad file"},
            {"artifact": "teacher/android", "test_mae": None}]  # never scored (a phone row): not judged
    assert accuracy_violations({"rows": rows}, 1.0) == [
        "student/a: own clean-test MAE 2 > --max-error 1",
        "student/c: own clean-test error not measured (failed: RuntimeError: bad file)"]


def test_headline_ratios() -> None:
    def row(artifact, backend, p50, mae=None, threads=1):
        return {"artifact": artifact, "backend": backend, "threads": threads, "p50_ms": p50, "test_mae": mae}
    rows = [row("student/tflite_fp32", "litert", 0.1, 6.9), row("student/tflite_int8", "litert", 0.06, 6.95),
            row("student/tflite_int8", "litert", 0.01, threads=2), row("student/onnx_fp32", "onnxruntime", 0.05),
            row("student/onnx_int8", "onnxruntime", 0.04, 7.0), row("teacher/tflite_fp32", "litert", 1.2, 4.5),
            row("student/torch_fp32", "torch", 0.5, 6.9)]
    h = headline(rows)
    assert h["int8_vs_fp32_tflite_p50"] == 0.6 and h["int8_vs_fp32_onnx_p50"] == 0.8
    assert h["student_int8_tflite_vs_teacher_fp32_tflite_p50"] == 0.05
    assert h["worst_int8_minus_float_mae"] == pytest.approx(0.1)
    assert h["int8_notes"] == []  # int8 is faster on both runtimes: nothing to explain


AVX2 = {"machine": "x86_64", "features": ["avx2", "avx512f"]}


def test_int8_slower_than_fp32_is_one_line_with_the_reason() -> None:
    def row(artifact, backend, p50):
        return {"artifact": artifact, "backend": backend, "threads": 1, "p50_ms": p50}
    rows = [row("student/tflite_fp32", "litert", 0.1), row("student/tflite_int8", "litert", 0.182),
            row("student/onnx_fp32", "onnxruntime", 0.05), row("student/onnx_int8", "onnxruntime", 0.04)]
    h = headline(rows, AVX2)
    assert h["int8_vs_fp32_tflite_p50"] == 1.82  # the note reads the same ratio the headline reports
    assert h["int8_notes"] == ["tflite_int8 is 1.82x slower than tflite_fp32 at 1 thread on this host: no "
                               "avx512_vnni/avx_vnni (int8 dot products take 3 instructions without VNNI)"]
    vnni = headline(rows, {"machine": "x86_64", "features": ["avx2", "avx512_vnni"]})["int8_notes"]
    assert len(vnni) == 1 and "has avx512_vnni, so not the dot-product instructions" in vnni[0]
    arm = headline(rows, {"machine": "aarch64", "features": []})["int8_notes"]
    assert len(arm) == 1 and "no asimddp" in arm[0]
    table = format_table({"rows": [], "headline": h, "failures": [
        {"artifact": "student/onnx_int8", "stage": "export", "reason": "parity failed: max 8.19"}]}).splitlines()
    assert table[0] == "FAILED student/onnx_int8 (export): parity failed: max 8.19 - not timed"
    assert table[-1] == "note: " + h["int8_notes"][0]
    assert not any(line.startswith("int8_notes") for line in table)


def test_host_description_names_isa_threads_and_runtime_versions(monkeypatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    host = host_description()
    assert host["cores"] >= 1 and host["torch_threads"] == torch.get_num_threads() and host["cpu"]
    assert set(host["features"]) <= set(ISA_FEATURES)
    assert list(host["runtimes"]) == list(RUNTIME_DISTRIBUTIONS)
    assert host["runtimes"]["torch"] == importlib.metadata.version("torch")
    assert host["runtimes"]["numpy"] == importlib.metadata.version("numpy")
    assert host["onednn_max_cpu_isa"] == "ONEDNN_MAX_CPU_ISA=AVX2"
    line = describe_host(host)
    assert line.startswith(host["cpu"]) and f"{host['torch_threads']} torch thread(s)" in line
    assert f"torch {host['runtimes']['torch']}" in line and line.endswith("ONEDNN_MAX_CPU_ISA=AVX2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert host_description()["onednn_max_cpu_isa"] is None  # recorded only when set


def test_host_description_imports_no_runtime() -> None:
    """Versions come from package metadata: describing the host must not load onnxruntime or LiteRT."""
    code = ("import sys; from pipeline.device import host_description; host_description(); "
            "print(sorted(m for m in ('onnxruntime', 'ai_edge_litert', 'coremltools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
