"""Tests for exporters.tflite_metadata: standard TFLite metadata written into a real .tflite and read back.

A tiny NHWC model is converted with litert-torch, metadata is written, and the file is checked three
ways: :func:`read_metadata` gives the meta back; the LiteRT interpreter still runs with bit-identical
outputs; and the ``TFLITE_METADATA`` buffer is decoded here with ``struct`` alone, by the field ids of
tflite-support's public ``metadata_schema.fbs`` (``ModelMetadata``: name 0, version 2,
subgraph_metadata 3, author 4, license 5, min_parser_version 7; ...), so a writer bug cannot be
cancelled by the same bug in the reader. Where ``flatc`` is installed it also decodes the buffer from the
schema's field declarations. Runs in ~8 s.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

litert_torch = pytest.importorskip("litert_torch")
interpreter = pytest.importorskip("ai_edge_litert.interpreter")

from exporters.metadata import artifact_meta, base_meta, compare_meta  # noqa: E402
from exporters.tflite_metadata import (  # noqa: E402
    META_JSON,
    TFLITE_METADATA,
    _with_metadata,
    metadata_buffers,
    read_metadata,
    read_model_metadata,
    standard_metadata,
    write_metadata,
)

torch.set_num_threads(1)


def _meta(shape: tuple[int, ...] = (1, 3, 64, 64), names: tuple[str, ...] = ("yaw", "pitch", "roll"),
          fmt: str = "tflite_fp32") -> dict:
    base = base_meta(name="tiny_pose", version="2.0.1", description="tiny head-pose test student",
                     author="tests", license="Apache-2.0", config_hash="feedbeef", output_names=names)
    return artifact_meta(base, fmt, shape, len(names))


def _convert(model: nn.Module, sample: torch.Tensor, path: Path, channel_last: bool) -> Path:
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    model = model.eval()
    if channel_last:
        model = litert_torch.to_channel_last_io(model, args=[0])
        sample = sample.permute(0, 2, 3, 1).contiguous()
    for m in model.modules():
        m.training = False
    litert_torch.convert(model, (sample,)).export(str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    interp = interpreter.Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1])
        interp.invoke()
        outs.append(interp.get_tensor(out["index"]).copy())
    return np.concatenate(outs)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, 8, 3, 2, 1, groups=8),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    return _convert(model, torch.rand(1, 3, 64, 64), tmp_path_factory.mktemp("tfl") / "plain.tflite", True)


@pytest.fixture
def written(plain_model: Path, tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "with_meta.tflite"
    path.write_bytes(plain_model.read_bytes())
    meta = _meta()
    write_metadata(path, meta)
    return path, meta


# ---- a decoder written from the schema's field ids, independent of exporters.tflite_metadata_schema ----

def _field(buf: bytes, table: int, fid: int) -> int | None:
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    slot = 4 + 2 * fid
    if slot >= struct.unpack_from("<H", buf, vtable)[0]:
        return None
    off = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + off if off else None


def _deref(buf: bytes, pos: int) -> int:
    return pos + struct.unpack_from("<I", buf, pos)[0]


def _str(buf: bytes, table: int, fid: int) -> str:
    p = _deref(buf, _field(buf, table, fid))
    return buf[p + 4:p + 4 + struct.unpack_from("<I", buf, p)[0]].decode()


def _vec(buf: bytes, table: int, fid: int) -> tuple[int, int]:
    p = _deref(buf, _field(buf, table, fid))
    return p + 4, struct.unpack_from("<I", buf, p)[0]


def _tables(buf: bytes, table: int, fid: int) -> list[int]:
    start, n = _vec(buf, table, fid)
    return [_deref(buf, start + 4 * i) for i in range(n)]


def _floats(buf: bytes, table: int, fid: int) -> list[float]:
    start, n = _vec(buf, table, fid)
    return list(struct.unpack_from(f"<{n}f", buf, start))


def test_metadata_round_trip(written) -> None:
    path, meta = written
    assert read_metadata(path) == meta
    assert compare_meta(meta, read_metadata(path)) == []
    std = read_model_metadata(path)
    assert (std["name"], std["version"], std["author"], std["license"], std["min_parser_version"]) == (
        "tiny_pose", "2.0.1", "tests", "Apache-2.0", "1.0.0")
    (inp,), (out,) = std["subgraphs"][0]["inputs"], std["subgraphs"][0]["outputs"]
    assert inp["content"] == {"kind": "image", "color_space": "RGB", "default_size": [64, 64]}
    assert inp["normalization"] == {"mean": [0.0] * 3, "std": [255.0] * 3}  # raw pixels: p / 255
    assert inp["stats"] == {"min": [0.0] * 3, "max": [1.0] * 3}
    assert inp["dimension_names"] == ["batch", "height", "width", "channels"]
    assert out["name"] == "pose" and out["description"].startswith("yaw, pitch, roll (degrees), in this order")
    assert out["content"] == {"kind": "feature"}


def test_interpreter_outputs_unchanged(plain_model: Path, written) -> None:
    path, _ = written
    x = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
    assert np.array_equal(_run(plain_model, x), _run(path, x))
    before = interpreter.Interpreter(model_path=str(plain_model)).get_signature_list()
    assert interpreter.Interpreter(model_path=str(path)).get_signature_list() == before


def test_buffers_decode_by_schema_field_ids(written) -> None:
    path, meta = written
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert names.count(TFLITE_METADATA) == 1 and names.count(META_JSON) == 1
    entries = metadata_buffers(path)
    assert json.loads(entries[META_JSON]) == meta
    buf = entries[TFLITE_METADATA]
    assert buf[4:8] == b"M001"  # file_identifier "M001"
    root = struct.unpack_from("<I", buf, 0)[0]
    assert (_str(buf, root, 0), _str(buf, root, 2), _str(buf, root, 4), _str(buf, root, 5)) == (
        "tiny_pose", "2.0.1", "tests", "Apache-2.0")
    assert _str(buf, root, 7) == "1.0.0"  # min_parser_version
    (subgraph,) = _tables(buf, root, 3)  # subgraph_metadata
    (inp,), (out,) = _tables(buf, subgraph, 2), _tables(buf, subgraph, 3)  # input/output_tensor_metadata
    assert _str(buf, inp, 0) == "image" and _str(buf, out, 0) == "pose"
    content = _deref(buf, _field(buf, inp, 3))  # TensorMetadata.content
    assert buf[_field(buf, content, 0)] == 2  # content_properties_type = ImageProperties
    image_props = _deref(buf, _field(buf, content, 1))
    assert buf[_field(buf, image_props, 0)] == 1  # color_space = RGB
    (unit,) = _tables(buf, inp, 4)  # process_units
    assert buf[_field(buf, unit, 0)] == 1  # options_type = NormalizationOptions
    options = _deref(buf, _field(buf, unit, 1))
    assert _floats(buf, options, 0) == [0.0] * 3 and _floats(buf, options, 1) == [255.0] * 3  # mean, std
    stats = _deref(buf, _field(buf, inp, 5))
    assert _floats(buf, stats, 0) == [1.0] * 3 and _floats(buf, stats, 1) == [0.0] * 3  # Stats: max 0, min 1


def test_buffers_stay_aligned(written) -> None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(written[0].read_bytes(), 0)
    for i in range(model.BuffersLength()):
        tab = model.Buffers(i)._tab
        if tab.Offset(4):  # Buffer.data present: schema.fbs asks for 16-byte alignment
            assert tab.Vector(tab.Offset(4)) % 16 == 0, f"buffer {i} is not 16-byte aligned"


# Field declarations of tflite-support's metadata_schema.fbs (schema 1.3.0; comments dropped), for flatc.
SCHEMA_FBS = """
namespace tflite;
file_identifier "M001";
enum AssociatedFileType : byte { UNKNOWN = 0, DESCRIPTIONS = 1, TENSOR_AXIS_LABELS = 2, TENSOR_VALUE_LABELS = 3,
  TENSOR_AXIS_SCORE_CALIBRATION = 4, VOCABULARY = 5 }
table AssociatedFile { name:string; description:string; type:AssociatedFileType; locale:string; }
table FeatureProperties { }
enum ColorSpaceType : byte { UNKNOWN = 0, RGB = 1, GRAYSCALE = 2 }
table ImageSize { width:uint; height:uint; }
table ImageProperties { color_space:ColorSpaceType; default_size:ImageSize; }
enum BoundingBoxType : byte { UNKNOWN = 0, BOUNDARIES = 1, UPPER_LEFT = 2, CENTER = 3 }
enum CoordinateType : byte { RATIO = 0, PIXEL = 1 }
table BoundingBoxProperties { index:[uint]; type:BoundingBoxType; coordinate_type:CoordinateType; }
table AudioProperties { sample_rate:uint; channels:uint; }
union ContentProperties { FeatureProperties, ImageProperties, BoundingBoxProperties, AudioProperties }
table ValueRange { min:int; max:int; }
table Content { content_properties:ContentProperties; range:ValueRange; }
table NormalizationOptions { mean:[float]; std:[float]; }
enum ScoreTransformationType : byte { IDENTITY = 0, LOG = 1, INVERSE_LOGISTIC = 2 }
table ScoreCalibrationOptions { score_transformation:ScoreTransformationType; default_score:float; }
table ScoreThresholdingOptions { global_score_threshold:float; }
table BertTokenizerOptions { vocab_file:[AssociatedFile]; }
table SentencePieceTokenizerOptions { sentence_piece_model:[AssociatedFile]; vocab_file:[AssociatedFile]; }
table RegexTokenizerOptions { delim_regex_pattern:string; vocab_file:[AssociatedFile]; }
union ProcessUnitOptions { NormalizationOptions, ScoreCalibrationOptions, ScoreThresholdingOptions,
  BertTokenizerOptions, SentencePieceTokenizerOptions, RegexTokenizerOptions }
table ProcessUnit { options:ProcessUnitOptions; }
table Stats { max:[float]; min:[float]; }
table TensorGroup { name:string; tensor_names:[string]; }
table TensorMetadata { name:string; description:string; dimension_names:[string]; content:Content;
  process_units:[ProcessUnit]; stats:Stats; associated_files:[AssociatedFile]; }
table SubGraphMetadata { name:string; description:string; input_tensor_metadata:[TensorMetadata];
  output_tensor_metadata:[TensorMetadata]; associated_files:[AssociatedFile]; input_process_units:[ProcessUnit];
  output_process_units:[ProcessUnit]; input_tensor_groups:[TensorGroup]; output_tensor_groups:[TensorGroup]; }
table ModelMetadata { name:string; description:string; version:string; subgraph_metadata:[SubGraphMetadata];
  author:string; license:string; associated_files:[AssociatedFile]; min_parser_version:string; }
root_type ModelMetadata;
"""


@pytest.mark.skipif(shutil.which("flatc") is None, reason="flatc (flatbuffers-compiler) not installed")
def test_flatc_reads_the_metadata(written, tmp_path: Path) -> None:
    """flatc, given the schema, verifies the buffer and turns it into JSON with the expected fields."""
    (tmp_path / "metadata_schema.fbs").write_text(SCHEMA_FBS)
    (tmp_path / "md.bin").write_bytes(metadata_buffers(written[0])[TFLITE_METADATA])
    subprocess.run(["flatc", "--json", "--strict-json", "--raw-binary", "-o", str(tmp_path),
                    str(tmp_path / "metadata_schema.fbs"), "--", str(tmp_path / "md.bin")], check=True)
    doc = json.loads((tmp_path / "md.json").read_text())
    assert (doc["name"], doc["version"], doc["min_parser_version"]) == ("tiny_pose", "2.0.1", "1.0.0")
    inp = doc["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert inp["content"]["content_properties_type"] == "ImageProperties"
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert inp["process_units"][0]["options_type"] == "NormalizationOptions"
    assert inp["process_units"][0]["options"]["std"] == [255.0] * 3
    out = doc["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert out["name"] == "pose" and out["content"]["content_properties_type"] == "FeatureProperties"


def test_rewrite_replaces_entries(written) -> None:
    path, meta = written
    size = path.stat().st_size
    meta2 = {**meta, "version": "2.0.2"}
    write_metadata(path, meta2)
    assert read_metadata(path) == meta2
    assert path.stat().st_size == size
    assert list(metadata_buffers(path)).count(TFLITE_METADATA) == 1


def test_inconsistent_or_missing_metadata(plain_model: Path, written, tmp_path: Path) -> None:
    assert read_metadata(plain_model) is None and read_model_metadata(plain_model) is None
    path, meta = written
    bad = tmp_path / "bad.tflite"  # JSON says one author, the standard metadata another
    from exporters import tflite_metadata_schema as mdfb

    standard = mdfb.encode(standard_metadata({**meta, "author": "someone else"}))
    bad.write_bytes(_with_metadata(path.read_bytes(), {TFLITE_METADATA: standard}, meta))
    with pytest.raises(ValueError, match="author"):
        read_metadata(bad)
    before = plain_model.read_bytes()
    with pytest.raises(ValueError, match="meta says"):  # an NCHW meta does not fit the NHWC model
        write_metadata(plain_model, _meta(fmt="coreml_fp32"))
    assert plain_model.read_bytes() == before


def test_int8_io_metadata() -> None:
    meta = _meta(fmt="tflite_int8")
    meta["input"].update(dtype="int8", quantization={"scale": 1 / 255, "zero_point": -128})
    meta["outputs"][0].update(dtype="int8", quantization={"scale": 0.75, "zero_point": 3})
    (inp,), (out,) = (lambda sg: (sg["inputs"], sg["outputs"]))(standard_metadata(meta)["subgraphs"][0])
    assert inp["normalization"] == {"mean": [0.0] * 3, "std": [255.0] * 3}  # shared with the float model
    assert inp["stats"] == {"min": [-128.0] * 3, "max": [127.0] * 3}
    assert "zero point -128" in inp["description"] and "(q - 3) * 0.75" in out["description"]


def test_vector_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    path = _convert(model, torch.zeros(1, 1), tmp_path / "toy.tflite", False)
    meta = _meta(shape=(1, 1), names=("y",))
    assert meta["input"]["layout"] == "NC"
    write_metadata(path, meta)
    assert read_metadata(path) == meta
    (inp,) = read_model_metadata(path)["subgraphs"][0]["inputs"]
    assert inp["content"] == {"kind": "feature"} and inp["normalization"] == {"mean": [0.0], "std": [1.0]}
    x = np.linspace(-2, 2, 5, dtype=np.float32).reshape(-1, 1)
    with torch.no_grad():
        assert np.allclose(_run(path, x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
