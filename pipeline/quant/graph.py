"""Graph utilities for PT2E-converted (Q/DQ) models: weight unfolding for the TFLite converter, and
the counts that say whether a graph is really int8."""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401  (registers the ops)
from torch.fx import GraphModule, Node

from pipeline.quant.quantizer import op_name

log = logging.getLogger(__name__)

_QD = torch.ops.quantized_decomposed
# dequantize op -> the quantize op with the same argument list (after the tensor)
_DQ_TO_Q = {
    _QD.dequantize_per_tensor.default: _QD.quantize_per_tensor.default,
    _QD.dequantize_per_tensor.tensor: _QD.quantize_per_tensor.tensor,
    _QD.dequantize_per_channel.default: _QD.quantize_per_channel.default,
}


def observers(prepared: nn.Module):
    """Observer / fake-quant modules (PT2E inserts them as direct children, activation_post_process_N)."""
    from torchao.quantization.pt2e import FakeQuantizeBase, ObserverBase

    for m in prepared.children():
        if isinstance(m, (ObserverBase, FakeQuantizeBase)):
            yield m


def _attr(gm: GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _arg_value(gm: GraphModule, arg: Any) -> Any:
    return _attr(gm, arg.target) if isinstance(arg, Node) and arg.op == "get_attr" else arg


def unfold_quantized_weights(converted: GraphModule) -> GraphModule:
    """Copy of ``converted`` with each int8 constant stored as float -> quantize -> dequantize.

    The float tensor is the exact dequantized value, so re-quantizing gives back the same int8
    (checked); the arithmetic is unchanged. litert-torch needs this form to produce int8 kernels
    (see the module docstring); ONNX takes the folded form.
    """
    gm = copy.deepcopy(converted)
    n = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _DQ_TO_Q:
            continue
        src = node.args[0]
        if not (isinstance(src, Node) and src.op == "get_attr"):
            continue
        q = _attr(gm, src.target)
        if not isinstance(q, torch.Tensor) or q.dtype not in (torch.int8, torch.uint8):
            continue
        rest = [_arg_value(gm, a) for a in node.args[1:]]
        fp = node.target(q, *rest)
        if not torch.equal(_DQ_TO_Q[node.target](fp, *rest), q):
            raise RuntimeError(f"re-quantizing {src.target} does not reproduce its int8 values")
        name = f"_unfolded_const_{n}"
        gm.register_buffer(name, fp)
        with gm.graph.inserting_before(node):
            fp_node = gm.graph.get_attr(name)
            q_node = gm.graph.call_function(_DQ_TO_Q[node.target], (fp_node, *node.args[1:]))
        node.replace_input_with(src, q_node)
        if not src.users:
            gm.graph.erase_node(src)
            if "." not in src.target and not any(
                    x.op == "get_attr" and x.target == src.target for x in gm.graph.nodes):
                delattr(gm, src.target)  # the int8 copy is no longer referenced
        n += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    log.info("unfolded %d int8 constants to float -> quantize -> dequantize", n)
    return gm


def quant_summary(converted: GraphModule) -> dict[str, Any]:
    """Counts that say whether a graph is really int8.

    Keys: ``quantize_nodes``, ``dequantize_nodes``, ``per_channel_dequantize_nodes``,
    ``int8_tensors`` (int8 constants feeding dequantize nodes), ``weighted_ops`` (conv/linear),
    ``weighted_ops_int8`` (conv/linear whose weight comes through a dequantize node),
    ``batchnorm_nodes``, ``has_batchnorm``, ``observer_modules`` (left-over observers/fake-quant).
    """
    s: dict[str, Any] = dict(quantize_nodes=0, dequantize_nodes=0, per_channel_dequantize_nodes=0,
                             int8_tensors=0, weighted_ops=0, weighted_ops_int8=0, batchnorm_nodes=0)
    weighted = {torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default,
                torch.ops.aten.convolution.default, torch.ops.aten.linear.default}
    for node in converted.graph.nodes:
        if node.op == "call_module":
            if isinstance(_attr(converted, node.target), nn.modules.batchnorm._BatchNorm):
                s["batchnorm_nodes"] += 1
            continue
        if node.op != "call_function":
            continue
        name = op_name(node)
        if name.startswith("quantize_per"):
            s["quantize_nodes"] += 1
        elif name.startswith("dequantize_per"):
            s["dequantize_nodes"] += 1
            s["per_channel_dequantize_nodes"] += "per_channel" in name
            src = node.args[0]
            if isinstance(src, Node) and src.op == "get_attr":
                t = _attr(converted, src.target)
                s["int8_tensors"] += isinstance(t, torch.Tensor) and t.dtype == torch.int8
        elif "batch_norm" in name:
            s["batchnorm_nodes"] += 1
        if node.target in weighted:
            s["weighted_ops"] += 1
            w = node.args[1]
            s["weighted_ops_int8"] += isinstance(w, Node) and op_name(w).startswith("dequantize_per")
    s["has_batchnorm"] = s["batchnorm_nodes"] > 0
    s["observer_modules"] = sum(1 for _ in observers(converted))
    return s


