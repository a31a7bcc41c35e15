"""Int8 quantization: PT2E capture -> QAT / PTQ -> convert, shared by the qat stage and the exporters.

Models are captured with :func:`torch.export.export` (dynamic batch), annotated by litert-torch's PT2E
quantizer (int8 per-channel symmetric weights, int8 per-tensor activations) with the fixes in
:mod:`pipeline.quant.quantizer`, prepared by torchao's PT2E flow, trained (QAT) or calibrated (PTQ),
and converted to a quantize/dequantize (Q/DQ) graph with int8 weights and batch norm folded.
One converted graph feeds every int8 artifact; the exporters (``exporters.onnx``, ``exporters.tflite``,
``exporters.coreml``) are the only int8 export route.

Modules:

* :mod:`~pipeline.quant.quantizer` - the quantizer and its annotation fixes
* :mod:`~pipeline.quant.prepare` - capture, prepare, calibrate, freeze, convert (usage in its docstring)
* :mod:`~pipeline.quant.graph` - weight unfolding for the TFLite converter, int8 census
* :mod:`~pipeline.quant.modes` - train/eval switching (no torchao import: the training loop uses it)
* :mod:`~pipeline.quant.patches` - version-pinned patches of torchao / litert-torch internals

The names below are imported lazily, so ``from pipeline.quant import set_train_mode`` does not
import torchao.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "set_train_mode": "modes", "set_bn_training": "modes",
    "make_quantizer": "quantizer", "litert_quant_config": "quantizer",
    "MAX_BATCH": "prepare", "export_for_quant": "prepare", "prepare_qat": "prepare", "prepare_ptq": "prepare",
    "calibrate": "prepare", "freeze_observers": "prepare", "freeze_bn_stats": "prepare", "convert": "prepare",
    "unfold_quantized_weights": "graph", "quant_summary": "graph", "observers": "graph",
    "check_versions": "patches",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
