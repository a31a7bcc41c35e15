"""Helpers for PT2E-converted int8 models (graphs with quantize/dequantize nodes) at export time.

``torchao``'s ``convert_pt2e`` writes weights either folded (an int8 constant feeding a dequantize
node, the default and what ``pipeline.quant.convert`` produces) or unfolded (float constant ->
quantize -> dequantize). ONNX wants them folded so weights are stored as int8 initializers;
:func:`fold_weights` makes sure of that on a copy (a no-op for folded graphs). The TFLite route needs
the opposite form, provided by ``pipeline.quant.unfold_quantized_weights``.

:class:`QuantIO` puts fixed int8 quantization on a model's input and output, which the TFLite
converter turns into int8 I/O tensors; the numpy helpers quantize inputs and dequantize outputs
for the runtimes exactly as the artifacts do.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import fx, nn
from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401  (registers the ops)

log = logging.getLogger(__name__)

_QD = torch.ops.quantized_decomposed
_DEQUANT_OPS = {_QD.dequantize_per_tensor.default, _QD.dequantize_per_tensor.tensor,
                _QD.dequantize_per_channel.default}
_QUANT_OPS = {_QD.quantize_per_tensor.default, _QD.quantize_per_tensor.tensor, _QD.quantize_per_channel.default}


def is_quantized(model: nn.Module) -> bool:
    """True for a GraphModule holding quantize/dequantize nodes (a PT2E-converted model)."""
    if not isinstance(model, fx.GraphModule):
        return False
    return any(n.op == "call_function" and (n.target in _QUANT_OPS or n.target in _DEQUANT_OPS)
               for n in model.graph.nodes)


def eval_copy(model: nn.Module) -> nn.Module:
    """A copy in inference mode. Exported graphs refuse ``.eval()``; torchao switches their BN/dropout ops."""
    from pipeline.quant import set_train_mode

    model = copy.deepcopy(model)
    set_train_mode(model, False)
    return model


def fold_weights(model: fx.GraphModule) -> fx.GraphModule:
    """A copy whose constant weights are stored quantized (int8 constant -> dequantize)."""
    from torchao.quantization.pt2e.constant_fold import constant_fold

    model = eval_copy(model)
    constant_fold(model, lambda n: n.op == "call_function" and n.target in _QUANT_OPS)
    return model


def _constant(model: fx.GraphModule, node: object) -> torch.Tensor | None:
    if isinstance(node, int | float):
        return torch.tensor(float(node))
    if isinstance(node, fx.Node) and node.op == "get_attr":
        obj = model
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj if isinstance(obj, torch.Tensor) else None
    return None


def output_passthrough_quantization(model: nn.Module) -> tuple[float, int] | None:
    """(scale, zero_point) of the per-tensor dequantize that is the graph's output up to ``+ 0`` / ``* 1``.

    Such identity tails (a label offset of 0, a scale of 1) are folded away by the TFLite converter,
    which then cannot requantize that dequantize to another output quantization ("type of return
    operand 0 ... doesn't match function result type"); int8 I/O must reuse these parameters.
    """
    if not isinstance(model, fx.GraphModule):
        return None
    identity = {torch.ops.aten.add.Tensor: 0.0, torch.ops.aten.sub.Tensor: 0.0, torch.ops.aten.mul.Tensor: 1.0}
    out = next(n for n in model.graph.nodes if n.op == "output").args[0]
    node = out[0] if isinstance(out, tuple | list) else out
    while isinstance(node, fx.Node) and node.op == "call_function":
        if node.target == _QD.dequantize_per_tensor.default:
            scale, zero = node.args[1], node.args[2]
            return (float(scale), int(zero)) if isinstance(scale, float) else None
        if node.target not in identity:
            return None
        a, b = node.args[:2]
        const_b, const_a = _constant(model, b), _constant(model, a)
        if const_b is not None and bool((const_b == identity[node.target]).all()):
            node = a
        elif const_a is not None and node.target != torch.ops.aten.sub.Tensor \
                and bool((const_a == identity[node.target]).all()):
            node = b
        else:
            return None
    return None


def fake_quant(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Quantize to int8 and back, as a graph op (exported as QUANTIZE/DEQUANTIZE)."""
    q = _QD.quantize_per_tensor.default(x, scale, zero_point, -128, 127, torch.int8)
    return _QD.dequantize_per_tensor.default(q, scale, zero_point, -128, 127, torch.int8)


class QuantIO(nn.Module):
    """``model`` with int8 fake quantization on its input and output (fixed scale and zero point)."""

    def __init__(self, model: nn.Module, input_q: tuple[float, int], output_q: tuple[float, int]):
        super().__init__()
        self.model = model
        self.input_q, self.output_q = input_q, output_q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant(self.model(fake_quant(x, *self.input_q)), *self.output_q)


def output_quantization(low: float, high: float) -> tuple[float, int]:
    """int8 (scale, zero_point) covering [low, high] (widened to include 0), as PT2E observers do."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max((high - low) / 255.0, 1e-8)
    zero_point = int(np.clip(round(-128 - low / scale), -128, 127))
    return scale, zero_point
