"""End to end through the real CLI on smoke.yaml: every stage, artifacts, manifests, parity, summary;
a second run is all cached; bad input exits 2 without writing."""

import json
import shutil
from pathlib import Path

import pytest

from pipeline.config import ExportConfig
from pipeline.faces import photos as photos_module
from pipeline.faces.crop import CropSpec
from tests.conftest import run_cli as cli

pytestmark = pytest.mark.slow


def test_smoke_pipeline_produces_every_stage_and_artifact(smoke_run):
    out, first = smoke_run
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    stages = summary["stages"]
    assert [s for s in stages] == ["source", "data", "teacher", "distill", "qat", "export", "benchmark", "report"]
    assert all(s["status"] == "ran" for s in stages.values()), stages
    for name, entry in stages.items():
        manifest = json.loads((Path(entry["dir"]) / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["stage"] == name
        for rel in manifest["artifacts"].values():
            assert (Path(entry["dir"]) / rel).exists(), rel
    assert (Path(stages["data"]["dir"]) / "contact_sheet.png").stat().st_size > 10_000
    t, d = stages["teacher"]["metrics"], stages["distill"]["metrics"]
    assert set(t["test_mae_per_output"]) == {"yaw", "pitch", "roll"}
    assert 0 < t["test_mae"] < 90 and 0 < d["test_mae"] < 90
    assert d["macs"] * 20 <= t["macs"]
    assert set(d["heads"]) == {"label", "teacher", "mean"}
    assert d["flagger"]["recall"] is not None
    q = stages["qat"]["metrics"]
    assert q["quantization"]["weighted_ops_int8"] == q["quantization"]["weighted_ops"] > 0
    assert not q["quantization"]["has_batchnorm"]
    arts = stages["export"]["metrics"]["artifacts"]
    assert set(arts) == set(ExportConfig().formats)  # every default format (ExecuTorch's with the extra)
    assert {"onnx_int8", "tflite_int8", "coreml_int8"} <= set(arts)
    for name, a in arts.items():
        assert a["status"] == "verified", (name, a)
        assert a["max_abs_diff"] <= a["tolerance"]
    report = json.loads((Path(stages["export"]["dir"]) / "export_report.json").read_text())
    bench = json.loads((Path(stages["benchmark"]["dir"]) / "benchmark.json").read_text())
    timed = {(r["artifact"], r["backend"]): r for r in bench["rows"] if r["status"] == "ok"}
    # every host-runnable student and teacher artifact is timed and scored on the whole test split
    for key in [("student/onnx_int8", "onnxruntime"), ("student/tflite_int8", "litert"),
                ("teacher/tflite_fp32", "litert"), ("teacher/onnx_fp32", "onnxruntime"),
                ("student/torch_int8", "torch")]:
        assert key in timed and timed[key]["p50_ms"] > 0 and timed[key]["test_mae"] is not None, key
    assert stages["benchmark"]["metrics"]["headline"]["int8_vs_fp32_tflite_p50"] > 0
    coreml_how = {report["artifacts"][f]["verified_by"].split(" (")[0] for f in arts if f.startswith("coreml")}
    assert coreml_how <= {"MIL emulation", "Core ML runtime"} and len(coreml_how) == 1
    assert "summary:" in first.stdout
    table = {line.split()[0]: line for line in first.stdout.splitlines() if line.startswith("  ")}
    assert f"verified ({coreml_how.pop()})" in table["coreml_int8"] and "max |diff|" in table["tflite_int8"]
    flagger = d["flagger"]
    assert f"precision {flagger['precision']:.2f} recall {flagger['recall']:.2f}" in table["distill"]
    # the crop spec travels with every artifact; the real-photo check ran in the benchmark stage
    meta = json.loads((Path(stages["export"]["dir"]) / "tflite_int8" / "model_meta.json").read_text())
    # the default renders show heads as a crop turned with the eye line shows them: the spec says so
    assert meta["input"]["crop"] == CropSpec(rotate="eye_line").framing()
    photos = stages["benchmark"]["metrics"]["real_photos"]
    assert set(photos) == {"student_float", "tflite_int8", "teacher", "ref_eye_line", "ref_constant"}, photos
    assert all(p["passes_all"] in (True, False) and -5 < p["roll_slope"] < 5 for p in photos.values())
    assert 0.9 < photos["ref_eye_line"]["roll_slope"] < 1.1  # the check itself follows a turning face
    checked = json.loads((Path(stages["benchmark"]["dir"]) / "real_photos.json").read_text())
    assert set(checked["models"]["tflite_int8"]["photos"]) == set(photos_module.NAMES)
    control = checked["control"]["models"]["tflite_int8"]["photos"]  # the rendered control: every face found
    assert len(control) == 6 and all("error" not in m for m in control.values()), control
    assert "real photos: student_float " in table["benchmark"] and "tflite_int8 " in table["benchmark"]
    html = next(Path(stages["report"]["dir"]).glob("*.html")).read_text()
    assert "Real photos" in html and "ref_eye_line" in html


def test_second_run_is_cached(smoke_run):
    out, _ = smoke_run
    again = cli("run", "smoke.yaml", "--out", str(out))
    assert again.returncode == 0
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    assert {s["status"] for s in summary["stages"].values()} == {"cached"}


def test_bad_checkpoint_fails_the_stage_cleanly(smoke_run, tmp_path):
    # on a copy: the shared smoke run stays whole for the other slow tests (the report reads it)
    out = Path(shutil.copytree(smoke_run[0], tmp_path / "runs"))
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    distill_dir = out / "smoke" / Path(summary["stages"]["distill"]["dir"]).name
    (distill_dir / "student.pt").write_bytes(b"garbage")
    b = cli("bench", str(out / "smoke"), "--backends", "torch", "--threads", "1", "--repeats", "1")
    assert b.returncode == 2 and "student.pt is not a readable checkpoint" in b.stderr, b.stderr[-2000:]
    r = cli("run", "smoke.yaml", "--out", str(out), "--force", "qat")
    assert r.returncode == 2  # a corrupt artifact is a user-fixable error: one line, --force named
    s2 = json.loads((out / "smoke" / "summary.json").read_text())
    assert s2["stages"]["qat"]["status"] == "failed" and s2["stages"]["export"]["status"] == "skipped"
    assert "student.pt is not a readable checkpoint" in s2["stages"]["qat"]["reason"]
    assert not (Path(s2["stages"]["qat"]["dir"]) / "manifest.json").exists()


def test_bench_max_error_fails_ci_naming_each_artifact(smoke_run, tmp_path):
    # on a copy: the shared smoke run stays whole for the other slow tests
    out = Path(shutil.copytree(smoke_run[0], tmp_path / "runs"))
    args = ("bench", str(out / "smoke"), "--backends", "torch", "--threads", "1", "--repeats", "1")
    loose = cli(*args, "--max-error", "1000")
    assert loose.returncode == 0, loose.stderr[-2000:]
    strict = cli(*args, "--max-error", "1e-6")
    over = [line for line in strict.stderr.splitlines() if line.startswith("above --max-error: ")]
    names = [line.split(": ")[1] for line in over]  # each torch model once: float and teacher at least
    assert strict.returncode == 1 and {"student/torch_fp32", "teacher/torch_teacher"} <= set(names), strict.stderr
    assert len(names) == len(set(names))
    assert all("own clean-test MAE" in line and "> --max-error 1e-06" in line for line in over)
    bad = cli(*args, "--max-error", "-1")
    assert bad.returncode == 2 and "--max-error -1.0: give a positive error" in bad.stderr
