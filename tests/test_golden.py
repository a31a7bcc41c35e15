"""Tests for exporters.golden: goldens written from a tiny exported student are self-consistent.

A tiny student (the one tests/test_exporters.py trains) is exported to tflite_fp32 and to tflite_int8
with int8 I/O; the writer's files must hold the tensor its own preprocessing builds from the stored
frames (bit for bit), the outputs the LiteRT interpreter computes on exactly that tensor, their
dequantization, and the axes of pipeline.data.visualize. The Kotlin core checks itself against the same
kind of files (android_demo/test-core.sh).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from exporters import golden
from exporters.export import export_all
from exporters.formats import ExportOptions, has_module
from exporters.metadata import META_FILE, read_meta
from tests.test_exporters import _images, _make_student, _meta

pytestmark = pytest.mark.skipif(not has_module("litert_torch"), reason="litert-torch is not installed")


@pytest.fixture(scope="module")
def goldens(tmp_path_factory) -> tuple:
    from pipeline import quant

    model = _make_student(steps=60)
    prepared = quant.prepare_ptq(model, _images(2, 1))
    quant.calibrate(prepared, [_images(16, 300 + i) for i in range(2)])
    run = tmp_path_factory.mktemp("run")
    export_all(model, quant.convert(prepared), _images(8, 7), run, ["tflite_fp32", "tflite_int8"], _meta(),
               ExportOptions(int8_io=True, output_range=(-120.0, 120.0)))
    out = tmp_path_factory.mktemp("golden")
    return run, out, golden.write_goldens(run, out)


def _load(path) -> dict:
    return json.loads(path.read_text())


def test_files_written_and_small(goldens) -> None:
    _, out, paths = goldens
    assert sorted(p.name for p in paths) == ["frames.json", "tflite_fp32.json", "tflite_int8_int8io.json"]
    assert sum(p.stat().st_size for p in paths) < 1_000_000
    frames = _load(out / golden.FRAMES_FILE)["frames"]
    assert [f["name"] for f in frames] == [c.name for c in golden.CASES]


@pytest.mark.parametrize("name", ["tflite_fp32", "tflite_int8_int8io"])
def test_golden_is_what_the_artifact_computes(goldens, name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    run, out, _ = goldens
    g = _load(out / f"{name}.json")
    fmt = name.removesuffix("_int8io")
    meta = read_meta(run / fmt / META_FILE)
    assert g["meta"] == meta and g["crop"] == golden.DEFAULT_CROP
    assert (meta["input"]["dtype"] == "int8") == name.endswith("_int8io")
    frames = _load(out / golden.FRAMES_FILE)["frames"]
    interp = Interpreter(model_path=str(run / fmt / f"{fmt}.tflite"))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    for i, (frame, case) in enumerate(zip(frames, g["cases"], strict=True)):
        rgb = golden.decode(frame["rgb"], "uint8").reshape(frame["height"], frame["width"], 3)
        square = golden.crop_square(frame["box"], g["crop"])
        assert case["square"] == list(square)
        crop = golden.crop_resize(rgb, square, 64, 64)
        assert np.array_equal(golden.decode(case["crop_rgb"], "uint8").reshape(64, 64, 3), crop)
        tensor = golden.input_tensor(crop, meta)
        assert hashlib.sha256(tensor.astype(tensor.dtype.newbyteorder("<")).tobytes()).hexdigest() == case["input_sha256"]
        if i == 0:
            assert np.array_equal(golden.decode(case["input"], case["input_dtype"]), tensor.reshape(-1))
        interp.set_tensor(inp["index"], tensor)
        interp.invoke()
        raw = interp.get_tensor(outp["index"]).reshape(-1)
        assert raw.tolist() == case["output_raw"] and raw.dtype.name == case["output_dtype"]
        pose = golden.dequantize(raw, meta["outputs"][0])
        assert np.allclose(pose, case["pose"], rtol=0, atol=1e-12)
        q = meta["outputs"][0]["quantization"]
        if q:  # int8 output: the pose lies on the output grid
            steps = np.asarray(case["pose"]) / q["scale"] + q["zero_point"]
            assert np.allclose(steps, np.round(steps), atol=1e-6)
        axes = golden.axes(case["pose"], tuple(case["axes"]["center"]), case["axes"]["length"])
        assert axes == case["axes"]


def test_int8_tensor_quantizes_the_float_tensor(goldens) -> None:
    _, out, _ = goldens
    f32 = _load(out / "tflite_fp32.json")["cases"][0]
    i8 = _load(out / "tflite_int8_int8io.json")
    q = i8["meta"]["input"]["quantization"]
    x = golden.decode(f32["input"], "float32").astype(np.float64)
    expected = np.clip(np.rint(x / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8)
    assert np.array_equal(golden.decode(i8["cases"][0]["input"], "int8"), expected)


def test_input_tensor_follows_the_meta() -> None:
    rgb = np.array([[[0, 51, 255], [255, 0, 0]]], np.uint8)
    base = {"input": {"layout": "NHWC", "dtype": "float32", "color": "RGB", "range": [0.0, 1.0],
                      "mean": [0.0] * 3, "std": [1.0] * 3, "quantization": None}}
    assert golden.input_tensor(rgb, base).reshape(-1).tolist() == pytest.approx([0, 0.2, 1, 1, 0, 0])
    moved = {"input": {**base["input"], "layout": "NCHW", "mean": [0.5] * 3, "std": [0.25] * 3}}
    assert golden.input_tensor(rgb, moved).shape == (1, 3, 1, 2)
    assert golden.input_tensor(rgb, moved)[0, 0].tolist() == [[-2.0, 2.0]]
    with pytest.raises(ValueError, match="layout"):
        golden.input_tensor(rgb, {"input": {**base["input"], "layout": "NC"}})


def test_crop_resize_identity_and_edges() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(golden.crop_resize(rgb, (0.0, 0.0, 8.0), 8, 8), rgb)
    outside = golden.crop_resize(rgb, (-20.0, -20.0, 2.0), 1, 1)
    assert np.array_equal(outside[0, 0], rgb[0, 0])


def test_clear_error_without_artifacts(tmp_path, capsys) -> None:
    with pytest.raises(FileNotFoundError, match="no exported TFLite artifact"):
        golden.find_artifacts(tmp_path)
    assert golden.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
