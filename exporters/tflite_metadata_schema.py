"""Encoder and decoder for the TFLite metadata flatbuffer (``ModelMetadata``, file identifier "M001").

What: the subset of tflite-support's public ``metadata_schema.fbs`` (schema 1.x, namespace ``tflite``)
that describes a model and its input/output tensors, written and read with the ``flatbuffers``
runtime alone. :func:`encode` turns a plain dict into the flatbuffer bytes; :func:`decode` turns
them back into the same dict.

Why hand-written: the official Python bindings ship only in ``tflite-support``, which is abandoned,
clashes with current protobuf and needs libusb; ``flatc`` would be one more tool to install and
re-run. The tables needed here are small, and writing them by field id keeps the format explicit.
Each table below lists its fields in schema order; a field's id is its position (a union takes two
ids: ``<name>_type``, then ``<name>``), and its vtable slot is at byte ``4 + 2 * id``.

Covered tables (schema field ids):

* ``ModelMetadata``: name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5,
  associated_files 6 (not written), min_parser_version 7
* ``SubGraphMetadata``: name 0, description 1, input_tensor_metadata 2, output_tensor_metadata 3
* ``TensorMetadata``: name 0, description 1, dimension_names 2, content 3, process_units 4, stats 5
* ``Content``: content_properties_type 0, content_properties 1 (union ``ContentProperties``:
  FeatureProperties 1, ImageProperties 2, BoundingBoxProperties 3, AudioProperties 4), range 2
* ``ImageProperties``: color_space 0 (``ColorSpaceType`` UNKNOWN 0, RGB 1, GRAYSCALE 2),
  default_size 1 (``ImageSize``: width 0, height 1, uint32)
* ``ProcessUnit``: options_type 0, options 1 (union ``ProcessUnitOptions``: NormalizationOptions 1,
  ScoreCalibrationOptions 2, ScoreThresholdingOptions 3, ...)
* ``NormalizationOptions``: mean 0, std 1 (``[float]``); ``Stats``: max 0, min 1 (``[float]``)

The dict form (all keys optional except where noted)::

    {"name", "description", "version", "author", "license", "min_parser_version",
     "subgraphs": [{"name", "description", "inputs": [tensor, ...], "outputs": [tensor, ...]}]}
    tensor = {"name", "description", "dimension_names": [str],
              "content": {"kind": "feature"} | {"kind": "image", "color_space": "RGB", "default_size": [w, h]},
              "normalization": {"mean": [float], "std": [float]}, "stats": {"min": [float], "max": [float]}}
"""

from __future__ import annotations

import logging
from typing import Any

import flatbuffers
from flatbuffers import encode as fb_encode
from flatbuffers import number_types as N
from flatbuffers import packer, util
from flatbuffers.table import Table

log = logging.getLogger(__name__)

FILE_IDENTIFIER = b"M001"
SCHEMA_BASE_VERSION = "1.0.0"  # every table and field written here exists since schema 1.0.0

CONTENT_KINDS = {"feature": 1, "image": 2, "bounding_box": 3, "audio": 4}
COLOR_SPACES = {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union member id

# field ids
MM_NAME, MM_DESCRIPTION, MM_VERSION, MM_SUBGRAPHS, MM_AUTHOR, MM_LICENSE, MM_FILES, MM_MIN_PARSER = range(8)
SG_NAME, SG_DESCRIPTION, SG_INPUTS, SG_OUTPUTS = range(4)
TM_NAME, TM_DESCRIPTION, TM_DIM_NAMES, TM_CONTENT, TM_PROCESS_UNITS, TM_STATS = range(6)
CT_PROPS_TYPE, CT_PROPS, CT_RANGE = range(3)
IP_COLOR_SPACE, IP_DEFAULT_SIZE = range(2)
IS_WIDTH, IS_HEIGHT = range(2)
PU_OPTIONS_TYPE, PU_OPTIONS = range(2)
NO_MEAN, NO_STD = range(2)
ST_MAX, ST_MIN = range(2)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------

def _strings(b: flatbuffers.Builder, values: list[str]) -> int:
    offsets = [b.CreateString(v) for v in values]
    return _offsets(b, offsets)


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _floats(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _table(b: flatbuffers.Builder, fields: dict[int, tuple[str, Any]]) -> int:
    """A table from ``{field_id: (kind, value)}``; kinds: "offset", "uint8", "int8", "uint32"."""
    b.StartObject(max(fields, default=-1) + 1)
    for fid in sorted(fields):
        kind, value = fields[fid]
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(fid, value, 0)
        elif kind == "uint8":
            b.PrependUint8Slot(fid, value, 0)
        elif kind == "int8":
            b.PrependInt8Slot(fid, value, 0)
        elif kind == "uint32":
            b.PrependUint32Slot(fid, value, 0)
        else:
            raise ValueError(f"unknown field kind {kind!r}")
    return b.EndObject()


def _text_fields(b: flatbuffers.Builder, d: dict, ids: dict[str, int]) -> dict[int, tuple[str, Any]]:
    return {fid: ("offset", b.CreateString(str(d[key]))) for key, fid in ids.items() if d.get(key) is not None}


def _content(b: flatbuffers.Builder, content: dict) -> int:
    kind = content.get("kind", "feature")
    if kind == "image":
        fields: dict[int, tuple[str, Any]] = {IP_COLOR_SPACE: ("int8", COLOR_SPACES[content.get("color_space", "RGB")])}
        if content.get("default_size"):
            width, height = content["default_size"]
            size = _table(b, {IS_WIDTH: ("uint32", int(width)), IS_HEIGHT: ("uint32", int(height))})
            fields[IP_DEFAULT_SIZE] = ("offset", size)
        props = _table(b, fields)
    elif kind == "feature":
        props = _table(b, {})
    else:
        raise ValueError(f"content kind {kind!r} is not written by this encoder")
    return _table(b, {CT_PROPS_TYPE: ("uint8", CONTENT_KINDS[kind]), CT_PROPS: ("offset", props)})


def _tensor(b: flatbuffers.Builder, t: dict) -> int:
    fields = _text_fields(b, t, {"name": TM_NAME, "description": TM_DESCRIPTION})
    if t.get("dimension_names"):
        fields[TM_DIM_NAMES] = ("offset", _strings(b, t["dimension_names"]))
    if t.get("content"):
        fields[TM_CONTENT] = ("offset", _content(b, t["content"]))
    if t.get("normalization"):
        norm = t["normalization"]
        mean, std = _floats(b, norm["mean"]), _floats(b, norm["std"])
        options = _table(b, {NO_MEAN: ("offset", mean), NO_STD: ("offset", std)})
        unit = _table(b, {PU_OPTIONS_TYPE: ("uint8", NORMALIZATION_OPTIONS), PU_OPTIONS: ("offset", options)})
        fields[TM_PROCESS_UNITS] = ("offset", _offsets(b, [unit]))
    if t.get("stats"):
        high, low = _floats(b, t["stats"]["max"]), _floats(b, t["stats"]["min"])
        fields[TM_STATS] = ("offset", _table(b, {ST_MAX: ("offset", high), ST_MIN: ("offset", low)}))
    return _table(b, fields)


def _subgraph(b: flatbuffers.Builder, sg: dict) -> int:
    fields = _text_fields(b, sg, {"name": SG_NAME, "description": SG_DESCRIPTION})
    fields[SG_INPUTS] = ("offset", _offsets(b, [_tensor(b, t) for t in sg.get("inputs", [])]))
    fields[SG_OUTPUTS] = ("offset", _offsets(b, [_tensor(b, t) for t in sg.get("outputs", [])]))
    return _table(b, fields)


def encode(md: dict) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier "M001") for the dict form in the module docstring."""
    b = flatbuffers.Builder(1024)
    fields = _text_fields(b, {"min_parser_version": SCHEMA_BASE_VERSION, **md},
                          {"name": MM_NAME, "description": MM_DESCRIPTION, "version": MM_VERSION,
                           "author": MM_AUTHOR, "license": MM_LICENSE, "min_parser_version": MM_MIN_PARSER})
    fields[MM_SUBGRAPHS] = ("offset", _offsets(b, [_subgraph(b, sg) for sg in md.get("subgraphs", [])]))
    b.Finish(_table(b, fields), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

class _Tab:
    """Read access to one flatbuffer table by field id."""

    def __init__(self, buf: bytes | bytearray, pos: int):
        self.t = Table(buf, pos)

    def _off(self, fid: int) -> int:
        return self.t.Offset(4 + 2 * fid)

    def has(self, fid: int) -> bool:
        return self._off(fid) != 0

    def string(self, fid: int) -> str | None:
        o = self._off(fid)
        return self.t.String(o + self.t.Pos).decode("utf-8") if o else None

    def scalar(self, fid: int, flags: Any, default: int = 0) -> int:
        o = self._off(fid)
        return self.t.Get(flags, o + self.t.Pos) if o else default

    def table(self, fid: int) -> _Tab | None:
        o = self._off(fid)
        return _Tab(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, fid: int) -> list[_Tab]:
        o = self._off(fid)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Tab(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def strings(self, fid: int) -> list[str]:
        o = self._off(fid)
        if not o:
            return []
        start = self.t.Vector(o)
        return [self.t.String(start + 4 * i).decode("utf-8") for i in range(self.t.VectorLen(o))]

    def floats(self, fid: int) -> list[float]:
        o = self._off(fid)
        if not o:
            return []
        start = self.t.Vector(o)
        return [float(self.t.Get(N.Float32Flags, start + 4 * i)) for i in range(self.t.VectorLen(o))]


def _decode_content(c: _Tab) -> dict:
    kind_id = c.scalar(CT_PROPS_TYPE, N.Uint8Flags)
    kind = {v: k for k, v in CONTENT_KINDS.items()}.get(kind_id, f"unknown({kind_id})")
    out: dict[str, Any] = {"kind": kind}
    props = c.table(CT_PROPS)
    if kind == "image" and props is not None:
        color = props.scalar(IP_COLOR_SPACE, N.Int8Flags)
        out["color_space"] = {v: k for k, v in COLOR_SPACES.items()}.get(color, str(color))
        size = props.table(IP_DEFAULT_SIZE)
        if size is not None:
            out["default_size"] = [size.scalar(IS_WIDTH, N.Uint32Flags), size.scalar(IS_HEIGHT, N.Uint32Flags)]
    return out


def _decode_tensor(t: _Tab) -> dict:
    out: dict[str, Any] = {"name": t.string(TM_NAME), "description": t.string(TM_DESCRIPTION)}
    if t.has(TM_DIM_NAMES):
        out["dimension_names"] = t.strings(TM_DIM_NAMES)
    content = t.table(TM_CONTENT)
    if content is not None:
        out["content"] = _decode_content(content)
    for unit in t.tables(TM_PROCESS_UNITS):
        options = unit.table(PU_OPTIONS)
        if unit.scalar(PU_OPTIONS_TYPE, N.Uint8Flags) == NORMALIZATION_OPTIONS and options is not None:
            out["normalization"] = {"mean": options.floats(NO_MEAN), "std": options.floats(NO_STD)}
        else:
            out.setdefault("other_process_units", []).append(unit.scalar(PU_OPTIONS_TYPE, N.Uint8Flags))
    stats = t.table(TM_STATS)
    if stats is not None:
        out["stats"] = {"min": stats.floats(ST_MIN), "max": stats.floats(ST_MAX)}
    return out


def decode(buf: bytes) -> dict:
    """The dict form of a ``ModelMetadata`` flatbuffer; raises ValueError without identifier "M001"."""
    if len(buf) < 8 or not util.BufferHasIdentifier(buf, 0, FILE_IDENTIFIER):
        raise ValueError(f"not a TFLite ModelMetadata flatbuffer (identifier {bytes(buf[4:8])!r} != {FILE_IDENTIFIER!r})")
    root = _Tab(buf, fb_encode.Get(packer.uoffset, buf, 0))
    out: dict[str, Any] = {key: root.string(fid) for key, fid in (
        ("name", MM_NAME), ("description", MM_DESCRIPTION), ("version", MM_VERSION), ("author", MM_AUTHOR),
        ("license", MM_LICENSE), ("min_parser_version", MM_MIN_PARSER))}
    out["subgraphs"] = [{"name": sg.string(SG_NAME), "description": sg.string(SG_DESCRIPTION),
                         "inputs": [_decode_tensor(t) for t in sg.tables(SG_INPUTS)],
                         "outputs": [_decode_tensor(t) for t in sg.tables(SG_OUTPUTS)]}
                        for sg in root.tables(MM_SUBGRAPHS)]
    return out
