"""Standard TFLite model metadata for exported students, written into and read back from a .tflite.

What
    :func:`write_metadata` embeds, in place, (1) a ``ModelMetadata`` flatbuffer in tflite-support's
    public metadata schema (file identifier "M001") under the model metadata name ``TFLITE_METADATA``,
    which is what tflite-support's ``MetadataDisplayer``, the Android Task Library and Android Studio's
    model viewer read; and (2) the full meta dict as JSON under a second model metadata entry,
    ``model_meta_json``. :func:`read_metadata` returns that meta after checking that the standard
    metadata agrees with it; :func:`read_model_metadata` decodes the standard metadata alone.

    Standard metadata written: model name, description, version, author, license,
    ``min_parser_version`` (1.0.0: only fields of schema 1.0.0 are used); for the input, name,
    description, dimension names, content ``ImageProperties`` (RGB, default size W x H) or
    ``FeatureProperties`` for vector inputs, a ``NormalizationOptions`` process unit and ``Stats``;
    for the output (``pose``), name, a description giving the component order and units ("yaw, pitch,
    roll (degrees) ..."), and ``FeatureProperties``. Normalization follows the schema's convention:
    mean/std apply to raw pixel values, ``(p - mean) / std``. The models take p / 255 in [0, 1], so an
    image input gets mean = 255 * meta mean = [0, 0, 0] and std = 255 * meta std = [255, 255, 255];
    quantized inputs share these (the schema's rule) and the runtime then quantizes with the tensor's
    own parameters. Stats are the input tensor's value range (its quantized range for int8 inputs).

Why this route
    The project installs with ``pip install -e .`` alone. tflite-support (the official writer) is
    abandoned, clashes with current protobuf and needs libusb, so the metadata flatbuffer is written by
    :mod:`exporters.tflite_metadata_schema` with Python bindings that ``flatc`` generated from the
    same public schema (committed with the command that regenerates them), on the ``flatbuffers``
    runtime that LiteRT already depends on. The model itself is edited as
    tflite-support's ``MetadataPopulator`` does: unpacked with the object API of the TFLite schema
    bindings shipped in ``ai-edge-litert`` (``ai_edge_litert.schema_py_generated.ModelT``), given a
    new buffer and ``Metadata`` entry, and packed again; buffer data keeps the schema's 16-byte
    alignment. The JSON goes into a plain model metadata entry (the mechanism converters use for
    ``min_runtime_version``) rather than an associated file: associated files are a zip archive
    appended to the model, which would need to be listed in the metadata and kept aligned, for no gain
    here. Runtimes ignore both entries; the interpreter's outputs are unchanged.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from exporters import tflite_metadata_schema as mdfb
from pipeline.runs import atomic_write_bytes

log = logging.getLogger(__name__)

TFLITE_METADATA = "TFLITE_METADATA"  # the name tflite-support and the Task Library look for
META_JSON = "model_meta_json"  # the full meta dict, JSON, UTF-8
MODEL_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16  # schema.fbs: Buffer.data (force_align: 16)
PIXEL_MAX = 255.0  # raw pixel values are 0..255; the models take pixel / 255


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


# --------------------------------------------------------------------------------------------
# meta -> standard metadata
# --------------------------------------------------------------------------------------------

def _input_metadata(inp: dict) -> dict:
    shape, layout, dtype = list(inp["shape"]), inp["layout"], inp["dtype"]
    q = inp.get("quantization")
    if not inp.get("color"):
        return {"name": inp["name"], "description": f"features, {layout} {shape} {dtype}",
                "dimension_names": ["batch", "features"], "content": {"kind": "feature"},
                "normalization": {"mean": [float(v) for v in inp["mean"]], "std": [float(v) for v in inp["std"]]}}
    height, width = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    mean = [PIXEL_MAX * float(v) for v in inp["mean"]]
    std = [PIXEL_MAX * float(v) for v in inp["std"]]
    low = [(0.0 - m) / s for m, s in zip(mean, std, strict=True)]
    high = [(PIXEL_MAX - m) / s for m, s in zip(mean, std, strict=True)]
    text = (f"{inp['color']} image, {layout} {shape} {dtype}: pixel p in [0, 255] feeds (p - mean) / std, "
            f"i.e. p / 255 in [{inp['range'][0]:g}, {inp['range'][1]:g}]")
    if q:
        info = np.iinfo(np.dtype(dtype))
        low = [float(np.clip(round(v / q["scale"]) + q["zero_point"], info.min, info.max)) for v in low]
        high = [float(np.clip(round(v / q["scale"]) + q["zero_point"], info.min, info.max)) for v in high]
        text += f", then quantized with scale {q['scale']:.9g}, zero point {q['zero_point']}"
    dims = {"NHWC": ["batch", "height", "width", "channels"], "NCHW": ["batch", "channels", "height", "width"]}
    return {"name": inp["name"], "description": text, "dimension_names": dims[layout],
            "content": {"kind": "image", "color_space": inp["color"], "default_size": [int(width), int(height)]},
            "normalization": {"mean": mean, "std": std}, "stats": {"min": low, "max": high}}


def _output_description(out: dict) -> str:
    text = f"{', '.join(out['names'])} ({out['units']}), in this order along the last axis; {out['dtype']}"
    q = out.get("quantization")
    if q:
        text += f", dequantize with (q - {q['zero_point']}) * {q['scale']:.9g}"
    return text


def standard_metadata(meta: dict) -> dict:
    """The ``ModelMetadata`` content (dict form of :mod:`exporters.tflite_metadata_schema`) for ``meta``."""
    outputs = [{"name": out["name"], "description": _output_description(out), "content": {"kind": "feature"}}
               for out in meta["outputs"]]
    return {"name": meta["name"], "description": meta["description"], "version": meta["version"],
            "author": meta["author"], "license": meta["license"],
            "subgraphs": [{"name": meta["name"], "description": f"{meta.get('task', 'regression')} model",
                           "inputs": [_input_metadata(meta["input"])], "outputs": outputs}]}


# --------------------------------------------------------------------------------------------
# The .tflite flatbuffer
# --------------------------------------------------------------------------------------------

@functools.cache
def _aligned_buffer_class() -> type:
    """``BufferT`` whose data vector is packed at :data:`BUFFER_ALIGNMENT` (the generated code uses 1)."""
    schema = _schema()

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder: flatbuffers.Builder) -> int:  # the generated-code method name
            vec = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head -= len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                vec = builder.EndVector()
            schema.BufferStart(builder)
            if vec is not None:
                schema.BufferAddData(builder, vec)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def _aligned_buffer(data: Any) -> Any:
    return _aligned_buffer_class()(data=data)


def _check_model(model: Any, meta: dict) -> None:
    """The model must have one subgraph input and output matching the meta's dtype and shape."""
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise ValueError(f"expected 1 input and 1 output, the model has {len(sg.inputs)} and {len(sg.outputs)}")
    names = {v: k.lower() for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}
    for which, index, want in (("input", sg.inputs[0], meta["input"]), ("output", sg.outputs[0], meta["outputs"][0])):
        tensor = sg.tensors[index]
        shape, dtype = [int(d) for d in tensor.shape], names.get(tensor.type, str(tensor.type))
        if shape != list(want["shape"]) or dtype != want["dtype"]:
            raise ValueError(f"{which} tensor is {dtype} {shape}, the meta says {want['dtype']} {want['shape']}")


def _with_metadata(model_buf: bytes, entries: dict[str, bytes], meta: dict) -> bytes:
    """``model_buf`` with the named metadata ``entries`` set (replaced if present), re-packed."""
    schema = _schema()
    if not schema.Model.ModelBufferHasIdentifier(model_buf, 0):
        raise ValueError("not a TFLite model (file identifier TFL3 missing)")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_buf, 0))
    _check_model(model, meta)
    buffers = model.buffers or []
    if any(b is not None and b.offset > 1 for b in buffers):
        raise NotImplementedError("buffers stored after the flatbuffer (models > 2 GB) are not supported")
    model.buffers = [_aligned_buffer(None if b is None else b.data) for b in buffers]
    model.metadata = model.metadata or []
    existing = {m.name.decode() if isinstance(m.name, bytes) else m.name: m for m in model.metadata}
    for name, data in entries.items():
        if name in existing:
            model.buffers[existing[name].buffer] = _aligned_buffer(np.frombuffer(data, np.uint8))
        else:
            model.buffers.append(_aligned_buffer(np.frombuffer(data, np.uint8)))
            entry = schema.MetadataT()
            entry.name, entry.buffer = name, len(model.buffers) - 1
            model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_buf) + sum(map(len, entries.values())) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    return bytes(builder.Output())


def metadata_buffers(tflite_path: Path) -> dict[str, bytes]:
    """All model metadata entries of a .tflite: name -> buffer bytes."""
    buf = Path(tflite_path).read_bytes()
    model = _schema().Model.GetRootAs(buf, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        data = model.Buffers(entry.Buffer())
        out[entry.Name().decode()] = b"" if data.DataIsNone() else data.DataAsNumpy().tobytes()
    return out


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def write_metadata(tflite_path: Path, meta: dict) -> None:
    """Embed the standard metadata and the JSON meta into ``tflite_path`` (in place, atomically)."""
    path = Path(tflite_path)
    original = path.read_bytes()
    standard = mdfb.encode(standard_metadata(meta))
    entries = {TFLITE_METADATA: standard, META_JSON: json.dumps(meta, sort_keys=True).encode("utf-8")}
    patched = _with_metadata(original, entries, meta)
    atomic_write_bytes(path, patched)
    back = read_metadata(path)
    if back != meta:
        raise RuntimeError(f"{path.name}: the metadata did not read back equal")
    log.info("wrote TFLite metadata into %s (%d -> %d bytes; ModelMetadata %d bytes)", path.name, len(original),
             len(patched), len(standard))


def read_model_metadata(tflite_path: Path) -> dict | None:
    """The decoded ``TFLITE_METADATA`` ModelMetadata (dict form), or None when the model has none."""
    data = metadata_buffers(tflite_path).get(TFLITE_METADATA)
    return None if data is None else mdfb.decode(data)


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def metadata_problems(standard: dict, meta: dict) -> list[str]:
    """Where the standard metadata disagrees with ``meta`` (empty when they agree)."""
    want = standard_metadata(meta)
    problems = [f"{k}: {standard.get(k)!r} != {want[k]!r}" for k in ("name", "description", "version", "author",
                                                                       "license") if standard.get(k) != want[k]]
    if standard.get("min_parser_version") != mdfb.SCHEMA_BASE_VERSION:
        problems.append(f"min_parser_version {standard.get('min_parser_version')!r}")
    if len(standard.get("subgraphs", [])) != 1:
        return problems + ["expected one subgraph"]
    got_sg, want_sg = standard["subgraphs"][0], want["subgraphs"][0]
    for which in ("inputs", "outputs"):
        if len(got_sg[which]) != len(want_sg[which]):
            problems.append(f"{which}: {len(got_sg[which])} tensors != {len(want_sg[which])}")
            continue
        for got, exp in zip(got_sg[which], want_sg[which], strict=True):
            for key in ("name", "description", "content", "dimension_names"):
                if got.get(key) != exp.get(key):
                    problems.append(f"{which} {exp['name']}.{key}: {got.get(key)!r} != {exp.get(key)!r}")
            for key, fields in (("normalization", ("mean", "std")), ("stats", ("min", "max"))):
                for field in fields:
                    a, b = (got.get(key) or {}).get(field, []), (exp.get(key) or {}).get(field, [])
                    if not _close(a, b):
                        problems.append(f"{which} {exp['name']}.{key}.{field}: {a} != {b}")
    return problems


def read_metadata(tflite_path: Path) -> dict | None:
    """The meta embedded by :func:`write_metadata` (None if absent).

    Raises ValueError when the standard ``TFLITE_METADATA`` disagrees with the JSON meta, so what the
    Task Library reads is what the pipeline meant.
    """
    entries = metadata_buffers(tflite_path)
    if META_JSON not in entries:
        return None
    meta = json.loads(entries[META_JSON].decode("utf-8"))
    if TFLITE_METADATA not in entries:
        raise ValueError(f"{Path(tflite_path).name}: {META_JSON} present but no {TFLITE_METADATA}")
    problems = metadata_problems(mdfb.decode(entries[TFLITE_METADATA]), meta)
    if problems:
        raise ValueError(f"{Path(tflite_path).name}: standard metadata differs from the meta: {'; '.join(problems)}")
    return meta
