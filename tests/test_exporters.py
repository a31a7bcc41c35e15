"""Tests for exporters: every format written, loaded in its runtime, within tolerance, metadata intact.

One tiny student (normalization buffers, conv/BN/ReLU stem, a depthwise-separable block, global pool,
linear head, output scale buffers; ~2.5k parameters) is exported once per module to every format this
machine can produce; the int8 model comes from ``pipeline.quant`` (PTQ). Formats whose exporter or
runtime is absent must be reported ``skipped`` (or ``exported``, unverified) with a reason; embedded
metadata (ONNX, TFLite via ``exporters.tflite_metadata``, CoreML) must read back equal to the
``model_meta.json`` beside it. A perturbed artifact must fail parity.
Runs in well under a minute on two CPU threads.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from exporters.export import NO_INT8, REPORT_FILE, export_all
from exporters.formats import FAMILIES, FORMATS, TOLERANCES, ExportOptions, has_module, missing_for_export
from exporters.metadata import IMAGE_INT8_QUANT, META_FILE, base_meta, compare_meta, read_meta
from exporters.parity import ParityError, check_parity

torch.set_num_threads(min(2, torch.get_num_threads()))
logging.getLogger("exporters").setLevel(logging.INFO)


class TinyStudent(nn.Module):
    """RGB [0,1] NCHW -> (N, 3) degrees, with the student's structure at a tiny width."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(  # depthwise-separable: 3x3 depthwise, then 1x1 pointwise
            nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.head = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
        self.register_buffer("scale", torch.tensor([[40.0, 25.0, 20.0]]))
        self.register_buffer("offset", torch.tensor([[2.0, -3.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.block(self.stem((x - self.mean) * self.inv_std)).mean(dim=(2, 3))
        return self.head(z) * self.scale + self.offset


class TinyMlp(nn.Module):
    """The 1-D toy: x (N, 1) -> y (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth random 'photos': low-frequency colour fields with per-image brightness and contrast."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    img = nn.functional.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    gain = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    img = (img - 0.5) * gain + torch.rand(n, 1, 1, 1, generator=g) * 0.4 + 0.3
    return (img.clamp(0, 1) * 255).round() / 255  # what an app feeds: pixel / 255


def _targets(x: torch.Tensor) -> torch.Tensor:
    """A learnable stand-in for pose: left/right and top/bottom brightness, red/blue balance (degrees)."""
    left, right = x[..., :32].mean((1, 2, 3)), x[..., 32:].mean((1, 2, 3))
    top, bottom = x[:, :, :32].mean((1, 2, 3)), x[:, :, 32:].mean((1, 2, 3))
    red_blue = x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))
    return torch.stack([(left - right) * 900, (top - bottom) * 600, red_blue * 400], 1)


def _make_student(steps: int = 150) -> TinyStudent:
    """Briefly trained (~1 s), so weights and BN statistics look like a trained network's.

    Random-init weights are a poor stand-in: their pooled features barely vary between images, and the
    head that spreads outputs over tens of degrees then amplifies every int8 rounding flip.
    """
    torch.manual_seed(0)
    model = TinyStudent()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        x = _images(32, 1000 + step)
        loss = ((model(x) - _targets(x)) / model.scale).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def ptq_student(steps: int = 60) -> tuple[TinyStudent, torch.nn.Module]:
    """(float student, its post-training-quantized int8 model) for tests that export a face model."""
    from pipeline import quant

    model = _make_student(steps=steps)
    prepared = quant.prepare_ptq(model, _images(2, 1))
    quant.calibrate(prepared, [_images(16, 300 + i) for i in range(2)])
    return model, quant.convert(prepared)


def _meta(**kw) -> dict:
    args = dict(name="tiny_pose", version="0.1.0", description="tiny head-pose test student",
                author="tests", license="Apache-2.0", config_hash="0123abcd")
    args.update(kw)
    return base_meta(**args)


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    from pipeline import quant

    model = _make_student()
    prepared = quant.prepare_ptq(model, _images(2, 1))
    quant.calibrate(prepared, [_images(32, 300 + i) for i in range(4)])
    return model, quant.convert(prepared), _images(16, 7)


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory) -> dict:
    model, int8, inputs = models
    out = tmp_path_factory.mktemp("export_all")
    report = export_all(model, int8, inputs, out, list(FORMATS), _meta(), ExportOptions())
    report["_dir"] = out
    return report


def test_table_is_complete() -> None:
    assert set(FORMATS) == {"onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_int8",
                            "coreml_fp32", "coreml_fp16", "coreml_int8", "executorch_fp32", "executorch_int8"}
    for fmt in FORMATS.values():
        assert fmt.family in FAMILIES and fmt.precision in TOLERANCES
        assert fmt.layout == ("NHWC" if fmt.family == "tflite" else "NCHW")
        assert fmt.needs_int8_model == (fmt.precision == "int8")
        assert 0 < fmt.tolerance and fmt.tolerance_why
    assert TOLERANCES["fp32"].max_abs < TOLERANCES["fp16"].max_abs < TOLERANCES["int8"].max_abs


def test_report_file_matches_return(exported) -> None:
    on_disk = json.loads((exported["_dir"] / REPORT_FILE).read_text())
    assert on_disk["artifacts"] == json.loads(json.dumps(exported["artifacts"]))
    assert set(on_disk["artifacts"]) == set(FORMATS)


@pytest.mark.parametrize("name", list(FORMATS))
def test_format_exported_and_verified(exported, name: str) -> None:
    rec, fmt, out = exported["artifacts"][name], FORMATS[name], exported["_dir"]
    if missing_for_export(fmt):
        assert rec["status"] == "skipped" and rec["reason"], rec
        return
    path = out / rec["path"]
    assert path.exists() and rec["size_bytes"] > 0
    if not has_module(fmt.runtime):
        assert rec["status"] == "exported" and rec["parity"]["status"] == "skipped" and rec["parity"]["reason"]
        return
    par = rec["parity"]
    assert rec["status"] == "verified", rec
    assert par["max_abs"] <= fmt.tolerance and par["n_samples"] == 16
    if fmt.needs_int8_model:  # for information: the converted torch model vs the float one
        assert par["int8_torch_vs_float_max_abs"] is not None
    assert rec["meta_path"] == f"{name}/{META_FILE}"
    meta = read_meta(out / rec["meta_path"])
    assert meta["format"] == name and meta["precision"] == fmt.precision
    assert meta["input"]["layout"] == fmt.layout
    assert meta["input"]["shape"] == ([1, 64, 64, 3] if fmt.layout == "NHWC" else [1, 3, 64, 64])
    assert meta["outputs"][0]["names"] == ["yaw", "pitch", "roll"]
    readable = fmt.family != "tflite" or has_module("exporters.tflite_metadata")
    assert rec["metadata"] == ("read back equal" if readable else "not embedded / no reader available here")


@pytest.mark.parametrize("name", ["onnx_fp32", "onnx_int8"])
def test_onnx_metadata_round_trip(exported, name: str) -> None:
    from exporters.onnx import read_onnx_meta

    rec, out = exported["artifacts"][name], exported["_dir"]
    assert rec["metadata"] == "read back equal"
    assert compare_meta(read_meta(out / rec["meta_path"]), read_onnx_meta(out / rec["path"])) == []


@pytest.mark.skipif(not has_module("exporters.tflite_metadata"), reason="exporters.tflite_metadata absent")
@pytest.mark.parametrize("name", ["tflite_fp32", "tflite_fp16", "tflite_int8"])
def test_tflite_metadata_round_trip(exported, name: str) -> None:
    from exporters.tflite_metadata import read_metadata

    rec, out = exported["artifacts"][name], exported["_dir"]
    assert compare_meta(read_meta(out / rec["meta_path"]), read_metadata(out / rec["path"])) == []


def test_onnx_int8_is_qdq_with_int8_weights(exported) -> None:
    import onnx

    proto = onnx.load(str(exported["_dir"] / exported["artifacts"]["onnx_int8"]["path"]))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert proto.opset_import[0].version >= 18


def test_fold_weights_restores_int8_constants(models) -> None:
    from exporters.qdq import fold_weights, is_quantized
    from pipeline.quant import quant_summary, unfold_quantized_weights

    _, int8, inputs = models
    unfolded = unfold_quantized_weights(int8)
    assert quant_summary(unfolded)["int8_tensors"] == 0
    folded = fold_weights(unfolded)
    assert is_quantized(folded) and quant_summary(folded)["int8_tensors"] == quant_summary(int8)["int8_tensors"]
    with torch.no_grad():
        assert torch.equal(folded(inputs), int8(inputs))


def _int8_io_export(model: nn.Module, int8: nn.Module, inputs: torch.Tensor, out) -> tuple[dict, dict]:
    from ai_edge_litert.interpreter import Interpreter

    report = export_all(model, int8, inputs, out, ["tflite_int8"], _meta(),
                        ExportOptions(int8_io=True, output_range=(-120.0, 120.0)))
    rec = report["artifacts"]["tflite_int8"]
    assert rec["status"] == "verified", rec
    meta = read_meta(out / rec["meta_path"])
    interp = Interpreter(model_path=str(out / rec["path"]))
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert inp["quantization"][1] == IMAGE_INT8_QUANT["zero_point"]
    assert inp["quantization"][0] == pytest.approx(IMAGE_INT8_QUANT["scale"], rel=1e-6)
    assert meta["input"]["dtype"] == "int8" and meta["input"]["quantization"]["zero_point"] == -128
    assert meta["outputs"][0]["dtype"] == "int8"
    assert meta["outputs"][0]["quantization"]["scale"] == pytest.approx(outp["quantization"][0], rel=1e-6)
    return rec, meta


def test_tflite_int8_io(models, tmp_path) -> None:
    model, int8, inputs = models
    _, meta = _int8_io_export(model, int8, inputs, tmp_path)
    # The graph ends in a float "+ offset", so the output gets the requested range.
    assert meta["outputs"][0]["quantization"]["scale"] == pytest.approx(240.0 / 255.0, rel=1e-5)


def test_tflite_int8_io_when_graph_ends_in_dequantize(models, tmp_path) -> None:
    """With a zero offset the converter folds "+ 0" and cannot requantize: the model's own output
    quantization is kept instead of output_range."""
    model, int8, inputs = models
    model, int8 = copy.deepcopy(model), copy.deepcopy(int8)
    model.offset.zero_()
    (name,) = [n for n, _ in int8.named_buffers() if n.endswith("offset")]
    int8.get_buffer(name).zero_()
    _, meta = _int8_io_export(model, int8, inputs, tmp_path)
    assert meta["outputs"][0]["quantization"]["scale"] != pytest.approx(240.0 / 255.0, rel=1e-3)


def test_int8_skipped_without_int8_model(models, tmp_path) -> None:
    model, _, inputs = models
    report = export_all(model, None, inputs, tmp_path, ["onnx_int8", "tflite_int8"], _meta())
    for rec in report["artifacts"].values():
        assert rec["status"] == "skipped" and rec["reason"] == NO_INT8


def test_missing_family_module_is_skipped(models, tmp_path, monkeypatch) -> None:
    import exporters.formats as formats

    broken = dataclasses.replace(formats.FAMILIES["onnx"], requires=("no_such_module_xyz",))
    monkeypatch.setitem(formats.FAMILIES, "onnx", broken)
    model, _, inputs = models
    rec = export_all(model, None, inputs, tmp_path, ["onnx_fp32"], _meta())["artifacts"]["onnx_fp32"]
    assert rec["status"] == "skipped" and "no_such_module_xyz" in rec["reason"]


def test_corrupted_onnx_fails_parity(models, exported, tmp_path) -> None:
    import onnx
    from onnx import numpy_helper

    model, _, inputs = models
    rec, out = exported["artifacts"]["onnx_fp32"], exported["_dir"]
    proto = onnx.load(str(out / rec["path"]))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(w * np.float32(1.01), init.name))  # the largest tensor, +1 %
    bad = tmp_path / "corrupted.onnx"
    onnx.save(proto, str(bad))
    result = check_parity("onnx_fp32", bad, read_meta(out / rec["meta_path"]), inputs, model)
    assert result.status == "failed" and result.max_abs > FORMATS["onnx_fp32"].tolerance


def test_export_all_raises_parity_error_for_perturbed_weights(models, tmp_path, monkeypatch) -> None:
    import exporters.tflite as tflite

    model, _, inputs = models
    original = tflite.export_tflite

    def export_perturbed(m, sample, out_dir, options):
        m = copy.deepcopy(m)
        with torch.no_grad():
            m.head[2].weight.mul_(1.01)  # a 1 % error in the last layer
        return original(m, sample, out_dir, options)

    monkeypatch.setattr(tflite, "export_tflite", export_perturbed)
    with pytest.raises(ParityError, match="tflite_fp32") as err:
        export_all(model, None, inputs, tmp_path, ["tflite_fp32"], _meta())
    assert err.value.failures[0].max_abs > FORMATS["tflite_fp32"].tolerance
    report = json.loads((tmp_path / REPORT_FILE).read_text())  # written before raising
    assert report["artifacts"]["tflite_fp32"]["status"] == "failed"


def test_vector_model_layout_nc(tmp_path) -> None:
    torch.manual_seed(0)
    model = TinyMlp().eval()
    x = torch.linspace(-3, 3, 16).view(16, 1)
    report = export_all(model, None, x, tmp_path, ["onnx_fp32", "tflite_fp32"],
                        _meta(output_names=["y"], units="units"))
    for rec in report["artifacts"].values():
        assert rec["status"] == "verified", rec
        meta = read_meta(tmp_path / rec["meta_path"])
        assert meta["input"]["layout"] == "NC" and meta["input"]["shape"] == [1, 1]
        assert meta["input"]["color"] is None and meta["outputs"][0]["units"] == "units"


def test_compare_meta_reports_differences() -> None:
    a = {"input": {"quantization": {"scale": 1 / 255, "zero_point": -128}}, "name": "x"}
    b = json.loads(json.dumps(a))
    b["input"]["quantization"]["scale"] = float(np.float32(1 / 255))  # a float32 round trip is equal
    assert compare_meta(a, b) == []
    b["name"], b["extra"] = "y", 1
    assert sorted(compare_meta(a, b)) == ["meta.extra: only in actual", "meta.name: 'x' != 'y'"]


def test_unknown_format_is_rejected(models, tmp_path) -> None:
    model, _, inputs = models
    with pytest.raises(ValueError, match="onnx_fp64"):
        export_all(model, None, inputs, tmp_path, ["onnx_fp64"], _meta())
