"""ExecuTorch artifacts: both .pte rows export, lower to XNNPACK, carry their meta, pass parity, and a broken
file is a clear error. The test extra installs executorch, so none of this is skipped where tests run.

The student is the real ``mobile_xs`` at half width (conftest); its int8 model comes from the project's
own PTQ flow (``pipeline.quant``), the same converted graph every other int8 artifact is made from.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from exporters.export import export_all
from exporters.formats import FORMATS, installed_formats, missing_for_export
from exporters.metadata import base_meta, read_meta
from exporters.parity import check_parity
from tests.conftest import make_tiny_student, tiny_images

ET_FORMATS = ["executorch_fp32", "executorch_int8"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[dict, torch.nn.Module, torch.nn.Module, torch.Tensor]:
    from pipeline import quant

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = make_tiny_student()
    prepared = quant.prepare_ptq(model, tiny_images(2, seed=1))
    quant.calibrate(prepared, [tiny_images(32, seed=300 + i) for i in range(2)])
    int8 = quant.convert(prepared)
    inputs = tiny_images(16, seed=7)
    meta = base_meta(name="tiny", version="0.1.0", description="tiny student", author="tests",
                     license="Apache-2.0", config_hash="0123abcd")
    out = tmp_path_factory.mktemp("et")
    report = export_all(model, int8, inputs, out, ["tflite_int8", *ET_FORMATS], meta, strict=False)
    report["_dir"] = out
    return report, model, int8, inputs


def test_both_pte_rows_are_verified_with_meta_and_delegation(exported) -> None:
    report, *_ = exported
    for name in ET_FORMATS:
        rec = report["artifacts"][name]
        assert rec["status"] == "verified", rec["reason"]
        assert rec["path"].endswith(".pte") and rec["metadata"] == "read back equal"
        assert "executorch" in rec["verified_by"] and "XNNPACK" in rec["verified_by"]
        det = rec["details"]
        # every conv, linear, pooling and activation went to XNNPACK: nothing heavy is left portable
        assert det["backend"] == "XnnpackBackend" and det["delegated_subgraphs"] >= 1
        assert det["delegated_ops"] > 10 and det["delegated_share"] == pytest.approx(
            det["delegated_ops"] / (det["delegated_ops"] + det["portable_ops"]))
        assert not any("convolution" in op or "linear" in op for op in det["portable_by_op"]), det
    meta = read_meta(report["_dir"] / report["artifacts"]["executorch_int8"]["meta_path"])
    assert meta["format"] == "executorch_int8" and meta["input"]["layout"] == "NCHW"
    assert meta["tools"]["executorch"] != "not installed"


def test_int8_pte_matches_the_converted_model_like_tflite(exported) -> None:
    report, *_ = exported
    et, tfl = report["artifacts"]["executorch_int8"]["parity"], report["artifacts"]["tflite_int8"]["parity"]
    assert et["reference"] == tfl["reference"] == "int8 (PT2E-converted) torch model"
    assert et["max_abs"] <= FORMATS["executorch_int8"].tolerance and et["mean_abs"] <= 1.0
    assert report["artifacts"]["executorch_fp32"]["parity"]["max_abs"] < 1e-3
    # both integer runtimes land near each other, far closer than a broken graph (tens of degrees)
    assert abs(et["artifact_vs_float_mean_abs"] - tfl["artifact_vs_float_mean_abs"]) < 1.0


def test_perturbed_pte_fails_parity(exported, tmp_path) -> None:
    from exporters.executorch import export_executorch
    from exporters.formats import ExportOptions

    report, model, _, inputs = exported
    rec = report["artifacts"]["executorch_fp32"]
    meta = read_meta(report["_dir"] / rec["meta_path"])
    bad = make_tiny_student()
    with torch.no_grad():
        bad.head[-1].weight.mul_(1.01)  # a 1 % error in the last layer
    path = export_executorch(bad, inputs, tmp_path, ExportOptions(format="executorch_fp32", meta=meta))
    result = check_parity("executorch_fp32", path, meta, inputs, model)
    assert result.status == "failed" and result.max_abs > FORMATS["executorch_fp32"].tolerance


def _inspect(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporters.executorch", str(path)], capture_output=True,
                          text=True, timeout=300)


def test_corrupted_pte_is_a_clear_error(exported, tmp_path, capsys) -> None:
    from exporters.executorch import main as inspect_main

    report, model, _, inputs = exported
    rec = report["artifacts"]["executorch_fp32"]
    good = report["_dir"] / rec["path"]
    ok = _inspect(good)
    assert ok.returncode == 0 and json.loads(ok.stdout)["delegation"]["backend"] == "XnnpackBackend"
    data = good.read_bytes()
    truncated, renamed, garbled = tmp_path / "truncated.pte", tmp_path / "renamed.pte", tmp_path / "garbled.pte"
    truncated.write_bytes(data[: len(data) // 3])
    renamed.write_bytes(data[:4] + b"XX99" + data[8:])  # not an ExecuTorch file identifier
    for bad in (truncated, renamed, tmp_path / "missing.pte"):  # in process: the command's main (the good
        code = inspect_main([str(bad)])                          # file above went through a real launch)
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and lines[-1].startswith("error: ") and str(bad) in lines[-1], lines
    # in the pipeline a broken file is a failed parity check with the runtime's reason, not a crash
    meta = read_meta(report["_dir"] / rec["meta_path"])
    result = check_parity("executorch_fp32", truncated, meta, inputs, model)
    assert result.status == "failed" and "re-export it" in result.reason
    mid = len(data) // 2  # bytes garbled inside the weights: the file loads, parity catches it
    garbled.write_bytes(data[:mid] + b"\x7f" * 256 + data[mid + 256:])
    assert check_parity("executorch_fp32", garbled, meta, inputs, model).status == "failed"


def test_missing_extra_is_one_line_naming_the_install(monkeypatch) -> None:
    import exporters.formats as formats

    monkeypatch.setattr(formats, "has_module", lambda name: not name.startswith("executorch"))
    why = missing_for_export(FORMATS["executorch_int8"])
    assert why.endswith('install it with: pip install -e ".[executorch]"') and "\n" not in why
    assert installed_formats(["onnx_fp32", *ET_FORMATS]) == ["onnx_fp32"]


def test_config_names_the_extra_when_a_pte_row_cannot_be_written(monkeypatch) -> None:
    import exporters.formats as formats
    from pipeline.config import consistency_problems, load_config

    cfg = load_config("smoke.yaml", ["export.formats=[onnx_fp32,executorch_int8]"])
    assert not [p for p in consistency_problems(cfg) if "executorch" in p]
    monkeypatch.setattr(formats, "has_module", lambda name: not name.startswith("executorch"))
    problems = [p for p in consistency_problems(cfg) if "executorch" in p]
    assert problems == ['export.formats[1]: executorch_int8 needs the executorch extra; install it with: '
                        'pip install -e ".[executorch]" (or drop executorch_int8)']
