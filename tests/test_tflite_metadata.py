"""Tests for exporters.tflite_metadata: standard TFLite metadata written into a real .tflite and read back.

The shared tiny student is converted with litert-torch (NHWC), metadata is written, and the file is
checked four ways: :func:`read_metadata` gives the meta back; the LiteRT interpreter still runs with
bit-identical outputs; the ``TFLITE_METADATA`` buffer is decoded here with ``struct`` alone, by the
field ids of tflite-support's public ``metadata_schema.fbs`` (``ModelMetadata``: name 0, version 2,
subgraph_metadata 3, author 4, license 5, min_parser_version 7; ...), so a bug in the generated
bindings cannot be cancelled by the same bug in the reader; and ``flatc`` (Debian
``flatbuffers-compiler``, installed by ``.ci/run``) decodes it from the schema and regenerates the
committed bindings, which must agree with the committed module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import flatbuffers
import litert_torch
import numpy as np
import pytest
import torch
from ai_edge_litert import interpreter
from torch import nn

from exporters import tflite_metadata_schema as mdfb
from exporters.metadata import artifact_meta, base_meta, compare_meta
from exporters.tflite_metadata import (
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
SCHEMA = Path(mdfb.__file__).with_name("tflite_metadata_schema.fbs")
GENERATED = Path(mdfb.__file__).with_name("tflite_metadata_schema_generated.py")


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
def plain_model(tiny_student, tmp_path_factory) -> Path:
    return _convert(tiny_student(), torch.rand(1, 3, 64, 64), tmp_path_factory.mktemp("tfl") / "plain.tflite", True)


@pytest.fixture
def written(plain_model: Path, tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "with_meta.tflite"
    path.write_bytes(plain_model.read_bytes())
    meta = _meta()
    write_metadata(path, meta)
    return path, meta


# ---- a decoder written from the schema's field ids, independent of the generated bindings ----

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


def _flatc(*args: str) -> None:
    if shutil.which("flatc") is None:
        if os.environ.get("CI"):  # CI installs it: a missing flatc there is a broken set-up, not a skip
            pytest.fail("flatc not found: .ci/run installs the Debian package flatbuffers-compiler")
        pytest.skip("flatc is not installed (apt-get install flatbuffers-compiler); CI installs it")
    subprocess.run(["flatc", *args], check=True, capture_output=True, text=True)


def test_flatc_reads_the_metadata(written, tmp_path: Path) -> None:
    """flatc, given the committed schema, verifies the buffer and turns it into JSON with the expected fields."""
    (tmp_path / "md.bin").write_bytes(metadata_buffers(written[0])[TFLITE_METADATA])
    _flatc("--json", "--strict-json", "--raw-binary", "-o", str(tmp_path), str(SCHEMA), "--", str(tmp_path / "md.bin"))
    doc = json.loads((tmp_path / "md.json").read_text())
    assert (doc["name"], doc["version"], doc["min_parser_version"]) == ("tiny_pose", "2.0.1", "1.0.0")
    inp = doc["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert inp["content"]["content_properties_type"] == "ImageProperties"
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert inp["process_units"][0]["options_type"] == "NormalizationOptions"
    assert inp["process_units"][0]["options"]["std"] == [255.0] * 3
    out = doc["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert out["name"] == "pose" and out["content"]["content_properties_type"] == "FeatureProperties"


def test_committed_bindings_match_the_schema(written, tmp_path: Path) -> None:
    """The committed generated module is what flatc makes of the committed schema (the regeneration
    command is in the .fbs header): same public names, and a buffer re-packed by fresh bindings
    decodes equal with the committed ones."""
    _flatc("--python", "--gen-object-api", "--gen-onefile", "-o", str(tmp_path), str(SCHEMA))
    spec = importlib.util.spec_from_file_location("fresh_bindings", tmp_path / GENERATED.name)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    public = lambda m: {n for n in dir(m) if not n.startswith("_")}  # noqa: E731
    assert public(fresh) == public(mdfb.fb), "stale bindings: regenerate (see the .fbs header)"
    buf = metadata_buffers(written[0])[TFLITE_METADATA]
    builder = flatbuffers.Builder(1024)
    unpacked = fresh.ModelMetadataT.InitFromObj(fresh.ModelMetadata.GetRootAs(buf, 0))
    builder.Finish(unpacked.Pack(builder), file_identifier=b"M001")
    assert mdfb.decode(bytes(builder.Output())) == mdfb.decode(buf)


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


def test_vector_model(tiny_student, tmp_path: Path) -> None:
    model = tiny_student("mlp_s")
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
