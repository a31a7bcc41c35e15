"""ONNX export (fp32 and int8 QDQ) and its onnxruntime runner.

Why: ONNX is the portable artifact (desktop, server, Android via onnxruntime-mobile). fp32 comes from
the float model; int8 from the PT2E-converted model, whose quantize/dequantize nodes become ONNX
``QuantizeLinear``/``DequantizeLinear`` pairs (a QDQ graph that onnxruntime fuses into integer kernels).

How: ``torch.onnx.export(..., dynamo=True)`` at ``options.opset`` (>= 18) with a dynamic batch
dimension, then onnxsim, then the artifact meta as JSON under ``metadata_props["model_meta"]`` (plus a
few flat keys that viewers show). Int8 weights are folded first so they are stored as int8
initializers. Normally called through ``exporters.export``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import torch
from torch import nn

from exporters.formats import FORMATS, ExportOptions
from exporters.qdq import eval_copy, fold_weights, is_quantized
from pipeline.runs import atomic_path

log = logging.getLogger(__name__)

META_KEY = "model_meta"
MIN_OPSET = 18


def _to_onnx(model: nn.Module, sample: torch.Tensor, opset: int, in_name: str, out_name: str):
    """torch.onnx.export with a dynamic batch; a static batch when the graph only supports one."""
    kwargs = dict(dynamo=True, opset_version=opset, input_names=[in_name], output_names=[out_name],
                  verbose=False)
    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = contextlib.redirect_stdout(io.StringIO())  # the exporter prints progress lines
    try:
        with quiet:
            return torch.onnx.export(model, (sample,), dynamic_shapes=({0: batch},), **kwargs)
    except Exception as exc:  # e.g. a converted graph traced with a fixed batch guard
        log.warning("dynamic-batch ONNX export failed (%s: %s); exporting with a fixed batch of 1",
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        with contextlib.redirect_stdout(io.StringIO()):
            return torch.onnx.export(model, (sample,), **kwargs)


def _simplify(proto):
    from onnxsim import simplify

    simplified, ok = simplify(proto)
    if not ok:
        log.warning("onnxsim could not validate the simplified graph; keeping the unsimplified one")
        return proto
    return simplified


def set_meta(proto, meta: dict) -> None:
    """Write ``meta`` into ``metadata_props`` (JSON under ``model_meta``, flat keys for viewers)."""
    flat = {META_KEY: json.dumps(meta, sort_keys=True)}
    flat.update({k: str(meta[k]) for k in ("name", "version", "author", "license", "config_hash")})
    del proto.metadata_props[:]
    for key, value in flat.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = str(meta.get("description", ""))


def export_onnx(model: nn.Module, sample: torch.Tensor, out_dir: Path, options: ExportOptions) -> Path:
    """Write ``<format>.onnx`` into ``out_dir`` from ``model`` (float, or PT2E-converted for int8)."""
    import onnx

    fmt = FORMATS[options.format]
    if options.opset < MIN_OPSET:
        raise ValueError(f"opset {options.opset} < {MIN_OPSET}: the dynamo exporter needs opset >= 18")
    model = fold_weights(model) if is_quantized(model) else eval_copy(model)
    meta = options.meta
    program = _to_onnx(model, sample[:1].float(), options.opset, meta["input"]["name"],
                       meta["outputs"][0]["name"])
    proto = program.model_proto
    if options.simplify:
        proto = _simplify(proto)
    set_meta(proto, meta)
    onnx.checker.check_model(proto)
    path = Path(out_dir) / f"{fmt.name}{fmt.suffix}"
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    log.info("wrote %s (%d bytes, opset %d, %d nodes)", path, path.stat().st_size, options.opset,
             len(proto.graph.node))
    return path


def read_onnx_meta(path: Path) -> dict | None:
    """The meta embedded in an ONNX file (None if absent)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    return json.loads(props[META_KEY]) if META_KEY in props else None
