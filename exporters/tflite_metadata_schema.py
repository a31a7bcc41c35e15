"""The TFLite metadata flatbuffer (``ModelMetadata``, file identifier "M001") to and from a plain dict.

What: :func:`encode` turns the dict form below into the flatbuffer bytes and :func:`decode` turns them
back into the same dict. The flatbuffer work is done by the object API that ``flatc`` generates from
the schema (:mod:`exporters.tflite_metadata_schema_generated`, from ``tflite_metadata_schema.fbs``;
the command that regenerates it is in that file's header). This module only maps the generated
``*T`` classes to the project's dict form.

Why generated bindings: field ids, union member ids and alignment then come from the schema, not
from hand-kept constants. The official Python bindings ship only in ``tflite-support``, which is
abandoned, clashes with current protobuf and needs libusb, so the project generates its own from the
same public schema; at run time only the ``flatbuffers`` runtime (a LiteRT dependency) is needed.

The dict form (all keys optional)::

    {"name", "description", "version", "author", "license", "min_parser_version",
     "subgraphs": [{"name", "description", "inputs": [tensor, ...], "outputs": [tensor, ...]}]}
    tensor = {"name", "description", "dimension_names": [str],
              "content": {"kind": "feature"} | {"kind": "image", "color_space": "RGB", "default_size": [w, h]},
              "normalization": {"mean": [float], "std": [float]}, "stats": {"min": [float], "max": [float]}}
"""

from __future__ import annotations

from typing import Any

import flatbuffers
from flatbuffers import util

from exporters import tflite_metadata_schema_generated as fb

FILE_IDENTIFIER = b"M001"
SCHEMA_BASE_VERSION = "1.0.0"  # every table and field written here exists since schema 1.0.0

CONTENT_KINDS = {"feature": fb.ContentProperties.FeatureProperties, "image": fb.ContentProperties.ImageProperties,
                 "bounding_box": fb.ContentProperties.BoundingBoxProperties,
                 "audio": fb.ContentProperties.AudioProperties}
COLOR_SPACES = {k: v for k, v in vars(fb.ColorSpaceType).items() if not k.startswith("_")}


def _enum_name(table: dict[str, int], value: int) -> str | None:
    return next((k for k, v in table.items() if v == value), None)


# ---- dict -> generated objects ----

def _content(content: dict) -> fb.ContentT:
    kind = content.get("kind", "feature")
    out = fb.ContentT()
    if kind == "image":
        props = fb.ImagePropertiesT()
        props.colorSpace = COLOR_SPACES[content.get("color_space", "RGB")]
        if content.get("default_size"):
            props.defaultSize = fb.ImageSizeT()
            props.defaultSize.width, props.defaultSize.height = (int(v) for v in content["default_size"])
    elif kind == "feature":
        props = fb.FeaturePropertiesT()
    else:
        raise ValueError(f"content kind {kind!r} is not written by this encoder; use 'feature' or 'image'")
    out.contentPropertiesType, out.contentProperties = CONTENT_KINDS[kind], props
    return out


def _tensor(t: dict) -> fb.TensorMetadataT:
    out = fb.TensorMetadataT()
    out.name, out.description = t.get("name"), t.get("description")
    out.dimensionNames = list(t["dimension_names"]) if t.get("dimension_names") else None
    out.content = _content(t["content"]) if t.get("content") else None
    if t.get("normalization"):
        options = fb.NormalizationOptionsT()
        options.mean = [float(v) for v in t["normalization"]["mean"]]
        options.std = [float(v) for v in t["normalization"]["std"]]
        unit = fb.ProcessUnitT()
        unit.optionsType, unit.options = fb.ProcessUnitOptions.NormalizationOptions, options
        out.processUnits = [unit]
    if t.get("stats"):
        out.stats = fb.StatsT()
        out.stats.max = [float(v) for v in t["stats"]["max"]]
        out.stats.min = [float(v) for v in t["stats"]["min"]]
    return out


def _subgraph(sg: dict) -> fb.SubGraphMetadataT:
    out = fb.SubGraphMetadataT()
    out.name, out.description = sg.get("name"), sg.get("description")
    out.inputTensorMetadata = [_tensor(t) for t in sg.get("inputs", [])]
    out.outputTensorMetadata = [_tensor(t) for t in sg.get("outputs", [])]
    return out


def encode(md: dict) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier "M001") for the dict form in the module docstring."""
    root = fb.ModelMetadataT()
    for attr, key in (("name", "name"), ("description", "description"), ("version", "version"),
                      ("author", "author"), ("license", "license")):
        setattr(root, attr, None if md.get(key) is None else str(md[key]))
    root.minParserVersion = str(md.get("min_parser_version") or SCHEMA_BASE_VERSION)
    root.subgraphMetadata = [_subgraph(sg) for sg in md.get("subgraphs", [])]
    builder = flatbuffers.Builder(1024)
    builder.Finish(root.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


# ---- generated objects -> dict ----

def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


def _floats(values: Any) -> list[float]:
    return [] if values is None else [float(v) for v in values]


def _decode_content(c: fb.ContentT) -> dict:
    kind = _enum_name(CONTENT_KINDS, c.contentPropertiesType) or f"unknown({c.contentPropertiesType})"
    out: dict[str, Any] = {"kind": kind}
    props = c.contentProperties
    if kind == "image" and props is not None:
        out["color_space"] = _enum_name(COLOR_SPACES, props.colorSpace) or str(props.colorSpace)
        if props.defaultSize is not None:
            out["default_size"] = [int(props.defaultSize.width), int(props.defaultSize.height)]
    return out


def _decode_tensor(t: fb.TensorMetadataT) -> dict:
    out: dict[str, Any] = {"name": _text(t.name), "description": _text(t.description)}
    if t.dimensionNames is not None:
        out["dimension_names"] = [_text(n) for n in t.dimensionNames]
    if t.content is not None:
        out["content"] = _decode_content(t.content)
    for unit in t.processUnits or []:
        if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions and unit.options is not None:
            out["normalization"] = {"mean": _floats(unit.options.mean), "std": _floats(unit.options.std)}
        else:
            out.setdefault("other_process_units", []).append(int(unit.optionsType))
    if t.stats is not None:
        out["stats"] = {"min": _floats(t.stats.min), "max": _floats(t.stats.max)}
    return out


def decode(buf: bytes) -> dict:
    """The dict form of a ``ModelMetadata`` flatbuffer; raises ValueError without identifier "M001"."""
    if len(buf) < 8 or not util.BufferHasIdentifier(buf, 0, FILE_IDENTIFIER):
        raise ValueError(f"not a TFLite ModelMetadata flatbuffer (identifier {bytes(buf[4:8])!r} != {FILE_IDENTIFIER!r})")
    root = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buf, 0))
    out: dict[str, Any] = {key: _text(getattr(root, attr)) for key, attr in (
        ("name", "name"), ("description", "description"), ("version", "version"), ("author", "author"),
        ("license", "license"), ("min_parser_version", "minParserVersion"))}
    out["subgraphs"] = [{"name": _text(sg.name), "description": _text(sg.description),
                         "inputs": [_decode_tensor(t) for t in sg.inputTensorMetadata or []],
                         "outputs": [_decode_tensor(t) for t in sg.outputTensorMetadata or []]}
                        for sg in root.subgraphMetadata or []]
    return out
