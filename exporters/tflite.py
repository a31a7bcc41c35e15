"""TFLite export (fp32, fp16 weights, int8) through litert-torch, and its LiteRT interpreter runner.

Why: TFLite is the Android artifact. Phones hand images over channel-last, so image inputs are NHWC:
the model is wrapped with litert-torch's ``to_channel_last_io`` (a transpose the converter folds into
the graph), and the signature is named after the meta (input ``image``, output ``pose``).

How, per precision (one recipe each in :data:`RECIPES`):

* fp32: ``litert_torch.convert`` of the float model.
* fp16: the same with litert-torch's ``full_fp16_recipe()`` (ai-edge-quantizer float casting): weights
  are stored as float16 and dequantized to float32 at load, compute stays float32.
* int8: the PT2E-converted model (``pipeline.quant.convert``) with its int8 weight constants unfolded
  to float -> quantize -> dequantize (``pipeline.quant.unfold_quantized_weights``: litert-torch 0.10
  cannot lower a folded int8 constant), converted with ``pipeline.quant.litert_quant_config()`` so the
  quantize/dequantize pairs become integer kernels (without it the file computes in float). Float I/O by default;
  with ``options.int8_io`` the input gets fixed int8 quantization scale 1/255, zero point -128 (a raw
  uint8 pixel minus 128 feeds the model) and the output an int8 quantization over
  ``options.output_range`` (or the model's own output quantization when its graph ends in a
  dequantize, which the converter cannot requantize); it then emits int8 input and output tensors.

After writing, the I/O dtypes and quantization actually in the file are recorded in the meta, and the
meta is embedded with ``exporters.tflite_metadata.write_metadata`` when that module is available.
Normally called through ``exporters.export``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exporters.formats import FORMATS, ExportOptions, has_module
from exporters.metadata import IMAGE_INT8_QUANT, set_io_quantization
from exporters.qdq import QuantIO, eval_copy, output_passthrough_quantization, output_quantization
from pipeline.runs import atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)

METADATA_MODULE = "exporters.tflite_metadata"
OUTPUT_RANGE_MARGIN = 0.25  # int8 output range from samples is widened by this fraction of its span


class _Signature(nn.Module):
    """Names the TFLite signature: keyword input ``in_name``, dict output ``{out_name: y}``."""

    def __init__(self, inner: nn.Module, out_name: str):
        super().__init__()
        self.inner, self.out_name = inner, out_name

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        (x,) = inputs.values()
        return {self.out_name: self.inner(x)}


def _inference_mode(module: nn.Module) -> nn.Module:
    """Mark wrappers as not training without calling .eval() (exported graphs refuse it)."""
    for m in module.modules():
        m.training = False
    return module


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert-torch prints a progress tree unless LITERT_TORCH_SHOW_PROGRESS is off; the fp16 recipe prints
    size figures to stdout (kept at debug level)."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old
        if printed.getvalue().strip():
            log.debug("converter output:\n%s", printed.getvalue().strip())


def _fp32(model: nn.Module, sample: torch.Tensor, options: ExportOptions):
    return eval_copy(model), None


def _fp16(model: nn.Module, sample: torch.Tensor, options: ExportOptions):
    from litert_torch.generative.quantize.quant_recipes import full_fp16_recipe

    return eval_copy(model), full_fp16_recipe()


def _int8(model: nn.Module, sample: torch.Tensor, options: ExportOptions):
    from pipeline.quant import litert_quant_config, unfold_quantized_weights

    model = unfold_quantized_weights(eval_copy(model))
    if not options.int8_io:
        return model, litert_quant_config()
    if sample.dim() != 4:
        raise ValueError("int8 I/O is defined for image models (input quantization 1/255, -128)")
    in_q = (IMAGE_INT8_QUANT["scale"], IMAGE_INT8_QUANT["zero_point"])
    return QuantIO(model, in_q, _output_quantization(model, sample, options)), litert_quant_config()


def _output_quantization(model: nn.Module, sample: torch.Tensor, options: ExportOptions) -> tuple[float, int]:
    """int8 output (scale, zero_point): the model's own when its output is a dequantize (the converter
    cannot requantize there), else over ``options.output_range``, else over the sample outputs + margin."""
    own = output_passthrough_quantization(model)
    if own is not None:
        log.info("int8 output keeps the model's output quantization %s (output_range not applicable)", own)
        return own
    if options.output_range is not None:
        return output_quantization(*options.output_range)
    with torch.no_grad():
        y = model(sample)
    lo, hi = float(y.min()), float(y.max())
    low_high = (lo - OUTPUT_RANGE_MARGIN * (hi - lo), hi + OUTPUT_RANGE_MARGIN * (hi - lo))
    log.warning("int8 output range taken from %d sample outputs widened by %d%%: [%.3g, %.3g]; "
                "pass options.output_range (the label range) to fix it", len(sample),
                int(OUTPUT_RANGE_MARGIN * 100), *low_high)
    return output_quantization(*low_high)


RECIPES: dict[str, Callable] = {"fp32": _fp32, "fp16": _fp16, "int8": _int8}


def _record_io(path: Path, meta: dict) -> None:
    """Write the file's actual I/O dtype and quantization into ``meta``."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    for which, detail in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        dtype = np.dtype(detail["dtype"]).name
        scale, zero = detail["quantization"]
        quantized = dtype != "float32" and scale != 0.0
        set_io_quantization(meta, which, dtype, scale if quantized else None, zero if quantized else None)


def _embed_meta(path: Path, meta: dict) -> None:
    if not has_module(METADATA_MODULE):
        log.warning("%s is not available: %s carries no embedded metadata (model_meta.json only)",
                    METADATA_MODULE, path.name)
        return
    from exporters.tflite_metadata import write_metadata

    write_metadata(path, meta)


def export_tflite(model: nn.Module, sample: torch.Tensor, out_dir: Path, options: ExportOptions) -> Path:
    """Write ``<format>.tflite`` into ``out_dir`` (NHWC input for images)."""
    import litert_torch

    fmt = FORMATS[options.format]
    meta = options.meta
    sample = sample.float()
    module, quant_config = RECIPES[fmt.precision](model, sample, options)
    image = sample.dim() == 4
    if image and fmt.layout == "NHWC":
        module = litert_torch.to_channel_last_io(module, args=[0])
        sample = sample.permute(0, 2, 3, 1).contiguous()
    module = _inference_mode(_Signature(module, meta["outputs"][0]["name"]))
    path = Path(out_dir) / f"{fmt.name}{fmt.suffix}"
    with _quiet_converter(), atomic_path(path) as tmp:
        edge = litert_torch.convert(module, sample_kwargs={meta["input"]["name"]: sample[:1]},
                                    quant_config=quant_config)
        edge.export(str(tmp))
    # Each rewrite below replaces the complete file with another complete one (temp -> rename).
    if fmt.precision == "int8" and not options.int8_io:
        from exporters.tflite_io import tflite_float_io

        atomic_write_bytes(path, tflite_float_io(path.read_bytes()))
    _record_io(path, meta)
    _embed_meta(path, meta)
    log.info("wrote %s (%d bytes, input %s %s)", path, path.stat().st_size, meta["input"]["dtype"],
             meta["input"]["shape"])
    return path


def read_tflite_meta(path: Path) -> dict | None:
    """The meta embedded in a .tflite (None when the metadata module is not available)."""
    if not has_module(METADATA_MODULE):
        return None
    from exporters.tflite_metadata import read_metadata

    return read_metadata(path)
