"""Int8 quantization core: PT2E export -> QAT / PTQ -> convert -> int8 TFLite and int8 ONNX QDQ.

What
    Models are captured with :func:`torch.export.export` (dynamic batch dimension), annotated by the
    LiteRT PT2E quantizer shipped in ``litert_torch`` (int8 per-channel symmetric weights in
    [-127, 127], int8 per-tensor affine activations), prepared by torchao's PT2E flow
    (``torchao.quantization.pt2e``; the deprecated ``torch.ao.quantization`` is not used), trained
    (QAT) or calibrated (PTQ), and converted to a quantize/dequantize (Q/DQ) graph with int8 weight
    tensors and batch norm folded into the convolutions.

Why
    One graph feeds both int8 artifacts: TFLite (litert-torch lowers the Q/DQ pairs into int8
    CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels) and ONNX QDQ (QuantizeLinear /
    DequantizeLinear with int8 initializers). Training sees exactly the quantization parameters
    that are deployed (see :func:`_consistent_fake_quant`).

How (QAT; functions take whatever device the model is on)::

    prepared = prepare_qat(model, example)          # example: (N,3,64,64) float in [0,1], N >= 1
    calibrate(prepared, batches)                    # seed ranges from data before training
    for epoch in range(epochs):
        set_train_mode(prepared, True)
        if epoch >= freeze_bn_epoch: freeze_bn_stats(prepared)
        if epoch >= freeze_observers_epoch: freeze_observers(prepared)
        ...  # ordinary loop: loss(prepared(x), y).backward(); opt.step()
        set_train_mode(prepared, False)             # evaluation: BN on running stats
    converted = convert(prepared)                   # a deep copy; `prepared` stays usable
    quant_summary(converted)                        # node / int8 tensor counts, BN left?

PTQ: ``prepared = prepare_ptq(model, example); calibrate(prepared, batches); convert(prepared)``.

Int8 TFLite (litert-torch 0.10), i.e. :func:`to_tflite_int8`::

    import litert_torch
    edge = litert_torch.convert(unfold_quantized_weights(converted), (example[:1],),
                                quant_config=litert_quant_config())
    data = tflite_float_io(edge.model_content())    # float32 I/O whatever the graph boundary

- ``quant_config`` is required: without it the file converts but runs float kernels between
  QUANTIZE/DEQUANTIZE pairs (weights re-quantized at run time).
- ``unfold_quantized_weights``: the converter's StableHLO lowering wants weights as
  ``float -> quantize -> dequantize``; the folded int8 weights fail with ``'stablehlo.uniform_dequantize'
  op operand #0 must be ranked tensor of per-tensor integer quantized or per-axis integer quantized
  values, but got 'tensor<3x16xi8>'``.
- ``tflite_float_io``: when a quantize sits directly on the graph input (no float op before it,
  e.g. a normalization with mean 0 that folds away) the converter makes the input int8; likewise
  the output. The rewrite restores float32 I/O with QUANTIZE/DEQUANTIZE ops.
- Batch: the .tflite has a static batch of 1; ``interpreter.resize_tensor_input`` works for any
  batch. ``litert_torch.convert(..., dynamic_shapes=...)`` fails in 0.10 in the JAX lowering of the
  input ``sub`` (``AssertionError: float32[-9223372036854775808,64,64,3]``).

Int8 ONNX QDQ takes the folded model as is (dynamic batch; example batch >= 2, export would
specialize a batch of 1), i.e. :func:`to_onnx_int8`::

    prog = torch.onnx.export(converted, (example,), dynamo=True,
                             dynamic_shapes=({0: Dim("batch", min=1, max=MAX_BATCH)},))
    prog.save("model_int8.onnx")

(with ``unfold_quantized_weights`` the ONNX weights would stay float32 behind a QuantizeLinear).

Numerics (measured on 64 random inputs, tiny CNNs, mobile_xs, MLPs after a few QAT steps): the
converted model equals the fake-quant model in eval mode with observers frozen (max abs diff 0;
BN folding may in principle flip a rounding); onnxruntime and the TFLite int8 kernels match the
converted model within one output quantization step (max), mean far below. Ops the LiteRT quantizer
does not annotate stay float (an input ``sub``, a trailing ``add`` of the output offset); buffers
multiplied into the graph (``inv_std``, the output ``scale``) are quantized like activations (int8
per tensor), which QAT sees and compensates for.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.export import Dim
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e import (
    WrapperModule,
    disable_observer,
    enable_observer,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

log = logging.getLogger(__name__)

MAX_BATCH = 4096
_QD = torch.ops.quantized_decomposed
# dequantize op -> the quantize op with the same argument list (after the tensor)
_DQ_TO_Q = {
    _QD.dequantize_per_tensor.default: _QD.quantize_per_tensor.default,
    _QD.dequantize_per_tensor.tensor: _QD.quantize_per_tensor.tensor,
    _QD.dequantize_per_channel.default: _QD.quantize_per_channel.default,
}
_FROZEN_BN_ATTR = "_quant_bn_frozen"
_BN_TRAINING_ARG = 5  # aten.batch_norm(input, weight, bias, mean, var, training, momentum, eps, cudnn)


# --------------------------------------------------------------------------------------------
# Quantizer
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _export_patterns_as_modules() -> Iterator[None]:
    """Let litert-torch's conv-bn QAT annotator build its match patterns on torch >= 2.9.

    ``litert_torch.quantize.pt2e_quantizer_utils._do_annotate_conv_bn`` hands a plain function to
    torchao's ``_get_aten_graph_module_for_pattern``, which calls ``torch.export.export`` on it;
    torch 2.13 refuses (``ValueError: Expected `mod` to be an instance of `torch.nn.Module`, got
    <class 'function'>``). torchao's own patterns are wrapped in ``WrapperModule``; this does the
    same for litert's, for the duration of the annotation only.
    """
    import litert_torch.quantize.pt2e_quantizer_utils as utils

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern: Any, example_inputs: tuple, is_cuda: bool = False, **kwargs: Any) -> GraphModule:
        if not isinstance(pattern, nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, example_inputs, is_cuda, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original


_CONV_OPS = {
    "conv1d": (torch.ops.aten.conv1d.default,),
    "conv2d": (torch.ops.aten.conv2d.default, torch.ops.aten.conv2d.padding),
    "conv_transpose1d": (torch.ops.aten.conv_transpose1d.default,),
    "conv_transpose2d": (torch.ops.aten.conv_transpose2d.input,),
}


@contextlib.contextmanager
def _only_present_conv_patterns() -> Iterator[None]:
    """Skip torchao's conv-bn QAT rewrites for conv kinds the graph does not contain.

    ``_fuse_conv_bn_qat`` (prepare) and ``_fold_conv_bn_qat`` (convert) try conv1d, conv2d,
    conv_transpose1d and conv_transpose2d in turn, exporting every match/replacement pattern with
    dynamo each time (96 exports at convert, 10-25 s on a 2-core CPU). A pattern cannot match
    when its conv op is absent, so those helpers are skipped; results are unchanged.
    """
    from torchao.quantization.pt2e import qat_utils

    originals = {name: getattr(qat_utils, name)
                 for name in ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper")}

    def guarded(original: Any) -> Any:
        def helper(m: GraphModule, conv_fn: Any, *args: Any, **kwargs: Any) -> GraphModule:
            ops = _CONV_OPS.get(getattr(conv_fn, "__name__", ""))
            present = {n.target for n in m.graph.nodes if n.op == "call_function"}
            if ops is not None and torch.ops.aten.convolution.default not in present \
                    and not present.intersection(ops):
                return m
            return original(m, conv_fn, *args, **kwargs)
        return helper

    for name, fn in originals.items():
        setattr(qat_utils, name, guarded(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(qat_utils, name, fn)


def _fuse_linear_relu_annotation(model: GraphModule) -> None:
    """Quantize after ``relu`` instead of between ``linear`` and ``relu`` (as conv+relu already is).

    The LiteRT quantizer annotates a linear's output and leaves a following relu unannotated, which
    lowers to FULLY_CONNECTED -> DEQUANTIZE -> RELU (float) -> QUANTIZE. Moving the output spec
    onto the relu lets the converter fuse the activation into the int8 FULLY_CONNECTED.
    """
    relus = (torch.ops.aten.relu.default, torch.ops.aten.relu_.default)
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in relus:
            continue
        lin = node.args[0]
        if not (isinstance(lin, Node) and lin.op == "call_function"
                and lin.target == torch.ops.aten.linear.default and len(lin.users) == 1):
            continue
        ann = lin.meta.get("quantization_annotation")
        if ann is None or ann.output_qspec is None or node.meta.get("quantization_annotation"):
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=ann.output_qspec, _annotated=True)
        ann.output_qspec = None


def make_quantizer(qat: bool) -> Any:
    """The LiteRT PT2E quantizer: int8 per-channel symmetric weights, int8 per-tensor activations.

    QAT: moving-average min/max fake-quant (see :func:`_consistent_fake_quant`), conv+BN[+ReLU]
    annotated as one pattern for BN folding; linear+ReLU quantized after the ReLU. PTQ: histogram
    observers for activations, per-channel min/max for weights.
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class _LiteRTQuantizer(PT2EQuantizer):
        def annotate(self, model: GraphModule) -> GraphModule:
            # conv-bn annotators export their patterns with dynamo: skip them when there is no BN
            has_bn = any("batch_norm" in _op_name(n) for n in model.graph.nodes if n.op == "call_function")
            self.STATIC_QAT_ONLY_OPS = list(PT2EQuantizer.STATIC_QAT_ONLY_OPS) if has_bn else []
            with _export_patterns_as_modules():
                model = super().annotate(model)
            _fuse_linear_relu_annotation(model)
            return model

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    if qat:
        config = _consistent_fake_quant(config)
    return _LiteRTQuantizer().set_global(config)


def _consistent_fake_quant(config: Any) -> Any:
    """Swap litert's fused fake-quant modules for ``FakeQuantize`` with the same observers.

    litert's QAT config uses ``FusedMovingAvgObsFakeQuantize``, whose kernel computes its own
    qparams: for the int8 [-127, 127] per-channel symmetric weight spec they disagree with the
    observer's ``calculate_qparams`` that :func:`convert` uses (scale amax/127.5 instead of
    amax/127, and zero points of +-127 for one-element channels such as ``Linear(1, n)``, which
    zeroes those weights during training). ``FakeQuantize`` takes its qparams from the observer,
    so training sees exactly the numbers that get deployed.
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


# --------------------------------------------------------------------------------------------
# Export / prepare
# --------------------------------------------------------------------------------------------

def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def export_for_quant(model: nn.Module, example: torch.Tensor) -> GraphModule:
    """``torch.export`` with a dynamic batch dimension; returns the exported ``GraphModule``.

    The graph is captured in the model's current train/eval mode (batch norm is specialized) and
    shares parameters and buffers with ``model``. ``example`` is moved to the model's device; a
    batch of 1 is repeated to 2 (export would specialize a size-1 dimension).
    """
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).clone()
    example = example.to(_model_device(model))
    batch = Dim("batch", min=1, max=MAX_BATCH)
    ep = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    return ep.module()


def _prepare(model: nn.Module, example: torch.Tensor, qat: bool) -> GraphModule:
    # The exported module shares parameters and buffers with its source: work on a copy so that
    # training (or BN statistics) never touches the float model.
    model = copy.deepcopy(model)
    model.train(qat)  # QAT: BN in training form for the fused conv-bn pattern; PTQ: eval, BN fused
    gm = export_for_quant(model, example)
    quantizer = make_quantizer(qat)
    with _only_present_conv_patterns():
        prepared = prepare_qat_pt2e(gm, quantizer) if qat else prepare_pt2e(gm, quantizer)
    setattr(prepared, _FROZEN_BN_ATTR, False)
    if qat:
        move_exported_model_to_train(prepared)
    else:
        move_exported_model_to_eval(prepared)
    n_obs = sum(1 for _ in _observers(prepared))
    log.info("prepared %s graph: %d observer/fake-quant modules", "QAT" if qat else "PTQ", n_obs)
    return prepared


def prepare_qat(model: nn.Module, example: torch.Tensor) -> GraphModule:
    """Fake-quant graph for quantization-aware training (train mode; parameters are trainable).

    Conv+BN(+ReLU) pairs become the fused QAT conv-bn pattern (weights scaled by the BN std before
    fake quantization), so the trained weights fold into the int8 conv at :func:`convert`.
    Works on a deep copy: the source ``model`` is left untouched.
    """
    return _prepare(model, example, qat=True)


def prepare_ptq(model: nn.Module, example: torch.Tensor) -> GraphModule:
    """Observer graph for post-training quantization (eval mode; BN folded into conv at prepare).

    Works on a deep copy of ``model``.
    """
    return _prepare(model, example, qat=False)


# --------------------------------------------------------------------------------------------
# Calibration and the freeze schedule
# --------------------------------------------------------------------------------------------

def _observers(prepared: nn.Module) -> Iterator[nn.Module]:
    from torchao.quantization.pt2e import FakeQuantizeBase, ObserverBase

    for m in prepared.children():  # PT2E inserts them as direct children (activation_post_process_N)
        if isinstance(m, (ObserverBase, FakeQuantizeBase)):
            yield m


@torch.no_grad()
def calibrate(prepared: GraphModule, batches: Iterable[torch.Tensor]) -> int:
    """Run batches through the observers (eval mode, observers on); returns the batch count.

    Leaves the graph in eval mode. PTQ: histogram observers see every batch. QAT: the first batch
    sets each range, later ones move it by a moving average (constant 0.01).
    """
    device = _model_device(prepared)
    set_train_mode(prepared, False)
    prepared.apply(enable_observer)
    n = 0
    for x in batches:
        prepared(x.to(device))
        n += 1
    log.info("calibrated observers on %d batches", n)
    return n


def freeze_observers(prepared: GraphModule) -> None:
    """Stop updating quantization ranges; fake quantization continues with the frozen ones.

    Acts on QAT fake-quant modules. PTQ observers have no switch: stop feeding data instead.
    """
    prepared.apply(disable_observer)


def _set_bn_training(prepared: GraphModule, training: bool) -> int:
    n = 0
    for node in prepared.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.batch_norm.default:
            args = list(node.args)
            if args[_BN_TRAINING_ARG] != training:
                args[_BN_TRAINING_ARG] = training
                node.args = tuple(args)
            n += 1
    prepared.recompile()
    return n


def freeze_bn_stats(prepared: GraphModule) -> None:
    """Batch norm uses (and stops updating) its running statistics, also in train mode.

    Persists across :func:`set_train_mode`. Gamma/beta remain trainable.
    """
    setattr(prepared, _FROZEN_BN_ATTR, True)
    n = _set_bn_training(prepared, False)
    log.info("froze batch-norm statistics (%d batch-norm ops)", n)


def set_train_mode(prepared: nn.Module, train: bool) -> None:
    """Train/eval mode for any module: ``.train(train)`` for ordinary modules; for torch.export graphs
    (which refuse ``.train()``) torchao's ``move_exported_model_to_train/eval``, keeping a BN freeze."""
    try:  # an exported graph raises before changing anything
        prepared.train(train)
        return
    except NotImplementedError:
        pass
    if train:
        move_exported_model_to_train(prepared)
        if getattr(prepared, _FROZEN_BN_ATTR, False):
            _set_bn_training(prepared, False)
    else:
        move_exported_model_to_eval(prepared)
    for m in prepared.modules():  # the flag itself, for code that looks at .training
        m.training = train


# --------------------------------------------------------------------------------------------
# Convert and inspect
# --------------------------------------------------------------------------------------------

def convert(prepared: GraphModule, inplace: bool = False) -> GraphModule:
    """``convert_pt2e``: Q/DQ graph with int8 weight tensors and BN folded into the convs.

    Puts ``prepared`` in eval mode first. By default converts a deep copy, so ``prepared`` can keep
    training or serve as the fake-quant reference. The result runs in torch (float math between
    Q/DQ pairs), exports to ONNX QDQ directly, and to int8 TFLite through
    :func:`unfold_quantized_weights`.
    """
    set_train_mode(prepared, False)
    model = prepared if inplace else copy.deepcopy(prepared)
    with _only_present_conv_patterns():
        converted = convert_pt2e(model, fold_quantize=True)
    for m in converted.modules():
        m.training = False  # convert_pt2e disables .train()/.eval(); nothing in it depends on the flag
    log.info("converted: %s", quant_summary(converted))
    return converted


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


def _op_name(node: Node) -> str:
    return getattr(node.target, "__name__", str(node.target))


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
        name = _op_name(node)
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
            s["weighted_ops_int8"] += isinstance(w, Node) and _op_name(w).startswith("dequantize_per")
    s["has_batchnorm"] = s["batchnorm_nodes"] > 0
    s["observer_modules"] = sum(1 for _ in _observers(converted))
    return s


def tflite_float_io(model: bytes) -> bytes:
    """Give an int8 .tflite float32 inputs/outputs by adding QUANTIZE / DEQUANTIZE at the boundary.

    litert-torch folds a quantize that sits directly on a graph input (or a dequantize directly on
    an output) into the I/O tensor type, so a model without a float op at its boundary (an input
    normalization with mean 0, an output offset of 0) gets int8 I/O. This rewrites the flatbuffer:
    every int8/uint8 input/output of the signature subgraphs is replaced by a float32 tensor of the
    same name and shape, converted by a QUANTIZE (inputs) or DEQUANTIZE (outputs) op with the
    original quantization. Models with float I/O come back unchanged (the same object).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))
    quantized = (fb.TensorType.INT8, fb.TensorType.UINT8)

    def opcode(builtin: int) -> int:
        for i, oc in enumerate(m.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
                return i
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 2
        m.operatorCodes.append(oc)
        return len(m.operatorCodes) - 1

    def float_twin(sg: Any, idx: int) -> int:
        old = sg.tensors[idx]
        new = fb.TensorT()
        new.shape, new.shapeSignature, new.type, new.name = old.shape, old.shapeSignature, fb.TensorType.FLOAT32, old.name
        m.buffers.append(fb.BufferT())
        new.buffer = len(m.buffers) - 1
        old.name = old.name + b"_int8" if isinstance(old.name, bytes) else f"{old.name}_int8"
        sg.tensors.append(new)
        return len(sg.tensors) - 1

    def op(code: int, src: int, dst: int) -> Any:
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code, [src], [dst]
        return o

    subgraphs = sorted({sd.subgraphIndex for sd in (m.signatureDefs or [])}) or [0]
    changed = 0
    for si in subgraphs:
        sg = m.subgraphs[si]
        sg.inputs, sg.outputs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
        remap: dict[int, int] = {}
        for pos, idx in enumerate(sg.inputs):
            if sg.tensors[idx].type in quantized:
                remap[idx] = float_twin(sg, idx)
                sg.operators.insert(0, op(opcode(fb.BuiltinOperator.QUANTIZE), remap[idx], idx))
                sg.inputs[pos] = remap[idx]
        for pos, idx in enumerate(sg.outputs):
            if sg.tensors[idx].type in quantized:
                remap[idx] = float_twin(sg, idx)
                sg.operators.append(op(opcode(fb.BuiltinOperator.DEQUANTIZE), idx, remap[idx]))
                sg.outputs[pos] = remap[idx]
        for sd in m.signatureDefs or []:
            if sd.subgraphIndex == si:
                for tm in list(sd.inputs or []) + list(sd.outputs or []):
                    tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
        changed += len(remap)
    if not changed:
        return model
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    log.info("tflite: %d int8 I/O tensors wrapped to float32", changed)
    return bytes(builder.Output())


def _on_cpu(converted: GraphModule) -> GraphModule:
    """The converted model itself when on CPU, else a CPU copy (exports trace on CPU)."""
    if _model_device(converted).type == "cpu":
        return converted
    return copy.deepcopy(converted).cpu()


def to_tflite_int8(converted: GraphModule, example: torch.Tensor, float_io: bool = True) -> bytes:
    """Int8 TFLite flatbuffer of a converted model (the recipe in the module docstring).

    Static batch of 1 (resize the interpreter input for other batch sizes). ``float_io=False`` keeps
    whatever I/O types the converter chose (int8 where the graph boundary is quantized).
    """
    import litert_torch

    edge = litert_torch.convert(unfold_quantized_weights(_on_cpu(converted)), (example[:1].cpu(),),
                                quant_config=litert_quant_config())
    data = edge.model_content()
    return tflite_float_io(data) if float_io else data


def to_onnx_int8(converted: GraphModule, example: torch.Tensor) -> bytes:
    """Int8 ONNX QDQ model (int8 initializers, dynamic batch) of a converted model, serialized."""
    ex = example if example.shape[0] >= 2 else example.expand(2, *example.shape[1:]).clone()
    prog = torch.onnx.export(_on_cpu(converted), (ex.cpu(),), dynamo=True, verbose=False,
                             dynamic_shapes=({0: Dim("batch", min=1, max=MAX_BATCH)},))
    return prog.model_proto.SerializeToString()
