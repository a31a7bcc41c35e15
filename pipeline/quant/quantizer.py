"""The int8 quantizer: litert-torch's PT2E quantizer with the annotation fixes that keep graphs integer.

litert-torch's ``PT2EQuantizer`` gives int8 per-channel symmetric weights in [-127, 127] and int8
per-tensor affine activations. :func:`make_quantizer` narrows the weights to [-64, 64] (see
``WEIGHT_QMAX``) and corrects two annotation choices that cost speed on every runtime:

* An activation that follows a conv or linear (``relu``, ``hardtanh``/ReLU6, ``clamp``) is left
  unannotated while the conv's output is quantized, which lowers to ``conv -> Q -> DQ -> clip (float)
  -> Q -> DQ`` in every layer: onnxruntime keeps a float ``Clip`` between two quantize steps and
  LiteRT runs a float activation island. Moving the output spec onto the activation quantizes once,
  after it; onnxruntime then fuses ``DQ -> Conv -> Clip -> Q`` into one ``QLinearConv`` (the clip is
  implied by the output range) and LiteRT into an int8 ``CONV_2D`` with a fused RELU6.
* An input normalization ``(x - mean) * inv_std`` (vector models) is annotated as two quantized
  binary ops: two quantize steps before the first layer. Left unannotated, it runs in float and the
  first layer's input is quantized once. Image models take [0, 1] pixels without normalization, and
  their input gets the fixed pixel quantization (scale 1/255, zero point -128).

QAT swaps litert's fused fake-quant modules for ``FakeQuantize`` (see :func:`_consistent_fake_quant`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.fx import GraphModule, Node

from pipeline.quant.patches import export_patterns_as_modules
from pipeline.quant.pixels import PIXEL_SCALE, PIXEL_ZERO_POINT

_ACTIVATIONS = {torch.ops.aten.relu.default, torch.ops.aten.relu_.default, torch.ops.aten.hardtanh.default,
                torch.ops.aten.hardtanh_.default, torch.ops.aten.clamp.default}
# ops whose quantized output an activation can be fused into (batch_norm: the QAT conv-bn pattern's tail)
_PRODUCERS = {torch.ops.aten.linear.default, torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default,
              torch.ops.aten.convolution.default, torch.ops.aten.batch_norm.default,
              torch.ops.aten._native_batch_norm_legit_no_training.default}
_NORMALIZATION = {torch.ops.aten.sub.Tensor, torch.ops.aten.mul.Tensor}
# Weights are quantized to [-WEIGHT_QMAX, WEIGHT_QMAX] (7 bits), not [-127, 127]. Why: on x86 CPUs
# without VNNI (AVX2, AVX-512F) onnxruntime's u8s8 kernels multiply with VPMADDUBSW, which adds two
# u8*s8 products in a saturating int16: 2 * 255 * 127 = 64770 overflows, 2 * 255 * 64 = 32640 does
# not. onnxruntime's guidance for that saturation is this reduced weight range ("reduce_range").
# Doing it here, in QAT, keeps every int8 artifact (ONNX, TFLite, CoreML) the same model
# as the torch reference and gives the same numbers on every CPU. Measured cost: docs/benchmarks.md, "int8 on
# every CPU".
WEIGHT_QMAX = 64
_ANNOTATION = "quantization_annotation"


def op_name(node: Node) -> str:
    return getattr(node.target, "__name__", str(node.target))


def fuse_activation_annotations(model: GraphModule) -> int:
    """Quantize after an activation instead of between its producer and it; returns how many moved.

    The producer's output spec is dropped and so is the activation's input spec (each would insert a
    quantize step on that edge); the activation keeps its own output spec, or takes the producer's
    when it had none or only shared its input's.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    moved = 0
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in _ACTIVATIONS:
            continue
        src = node.args[0]
        if not (isinstance(src, Node) and src.op == "call_function" and src.target in _PRODUCERS
                and len(src.users) == 1):
            continue
        ann = src.meta.get(_ANNOTATION)
        if ann is None or ann.output_qspec is None:
            continue
        own = node.meta.get(_ANNOTATION)
        out_spec = own.output_qspec if own is not None else None
        if out_spec is None or isinstance(out_spec, SharedQuantizationSpec):
            out_spec = ann.output_qspec
        node.meta[_ANNOTATION] = QuantizationAnnotation(output_qspec=out_spec, _annotated=True)
        ann.output_qspec = None
        moved += 1
    return moved


def normalization_chain(model: GraphModule) -> tuple[Node, list[Node]] | None:
    """(graph input, [sub, mul]) when the graph starts with a ``(x - mean) * inv_std`` normalization."""
    for placeholder in (n for n in model.graph.nodes if n.op == "placeholder"):
        chain, node = [], placeholder
        while True:
            # users other than call_functions (torch.export's _guards_fn module) do not compute
            users = [u for u in node.users if u.op == "call_function"]
            if len(users) != 1 or users[0].target not in _NORMALIZATION:
                break
            node = users[0]
            chain.append(node)
        if [n.target for n in chain] == [torch.ops.aten.sub.Tensor, torch.ops.aten.mul.Tensor]:
            return placeholder, chain
    return None




def float_input_normalization(model: GraphModule) -> int:
    """Leave a ``(x - mean) * inv_std`` chain at the graph input float, so its result is quantized once.

    Returns the number of nodes left float.
    """
    found = normalization_chain(model)
    if found is None:
        return 0
    return sum(1 for node in found[1] if node.meta.pop(_ANNOTATION, None) is not None)


def pixel_input_quantization(model: GraphModule) -> int:
    """Image inputs (4-D, RGB in [0, 1] by the models' contract) feeding a quantized op directly get
    the fixed quantization scale 1/255, zero point -128: exactly ``pixel - 128`` for 8-bit pixels, so
    no calibration range can clip or coarsen them, and an int8-I/O artifact takes raw pixels minus 128.
    Returns the number of inputs fixed."""
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec

    fixed = 0
    for placeholder in (n for n in model.graph.nodes if n.op == "placeholder"):
        val = placeholder.meta.get("val")
        if getattr(val, "dim", lambda: 0)() != 4:
            continue
        for user in placeholder.users:
            ann = user.meta.get(_ANNOTATION)
            if ann is not None and placeholder in ann.input_qspec_map:
                ann.input_qspec_map[placeholder] = FixedQParamsQuantizationSpec(
                    dtype=torch.int8, scale=PIXEL_SCALE, zero_point=PIXEL_ZERO_POINT,
                    quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine)
                fixed += 1
    return fixed


def make_quantizer(qat: bool) -> Any:
    """The LiteRT PT2E quantizer with the fixes above.

    QAT: moving-average min/max fake-quant (see :func:`_consistent_fake_quant`), conv+BN[+act]
    annotated as one pattern for BN folding. PTQ: histogram observers for activations, per-channel
    min/max for weights.
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class _LiteRTQuantizer(PT2EQuantizer):
        def annotate(self, model: GraphModule) -> GraphModule:
            # conv-bn annotators export their patterns with dynamo: skip them when there is no BN
            has_bn = any("batch_norm" in op_name(n) for n in model.graph.nodes if n.op == "call_function")
            self.STATIC_QAT_ONLY_OPS = list(PT2EQuantizer.STATIC_QAT_ONLY_OPS) if has_bn else []
            with export_patterns_as_modules():
                model = super().annotate(model)
            fuse_activation_annotations(model)
            float_input_normalization(model)
            pixel_input_quantization(model)
            return model

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    config = dataclasses.replace(config, weight=dataclasses.replace(
        config.weight, quant_min=-WEIGHT_QMAX, quant_max=WEIGHT_QMAX))
    if qat:
        config = _consistent_fake_quant(config)
    return _LiteRTQuantizer().set_global(config)


def _consistent_fake_quant(config: Any) -> Any:
    """Swap litert's fused fake-quant modules for ``FakeQuantize`` with the same observers.

    litert's QAT config uses ``FusedMovingAvgObsFakeQuantize``, whose kernel computes its own
    qparams: for the int8 [-127, 127] per-channel symmetric weight spec they disagree with the
    observer's ``calculate_qparams`` that ``convert`` uses (scale amax/127.5 instead of amax/127,
    and zero points of +-127 for one-element channels such as ``Linear(1, n)``, which zeroes those
    weights during training). ``FakeQuantize`` takes its qparams from the observer, so training sees
    exactly the numbers that get deployed.
    """
    from torchao.quantization.pt2e import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
    )

    eps = 2**-12  # as in litert's config
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, eps=eps))
    weight = dataclasses.replace(config.weight, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver, eps=eps))
    return dataclasses.replace(config, input_activation=act, output_activation=act, weight=weight)


def litert_quant_config() -> Any:
    """``quant_config`` for ``litert_torch.convert``: marks the graph as PT2E static int8."""
    from litert_torch.quantize.quant_config import QuantConfig

    return QuantConfig(pt2e_quantizer=make_quantizer(qat=False))
