"""PT2E capture, QAT/PTQ preparation, calibration, the freeze schedule, and conversion.

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

Numerics: the converted model equals the fake-quant model in eval mode with observers frozen (BN
folding may in principle flip a rounding); the integer runtimes match the converted model within
about one output quantization step.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import nn
from torch.export import Dim
from torch.fx import GraphModule
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

from pipeline.quant.graph import observers, quant_summary
from pipeline.quant.modes import FROZEN_BN_ATTR, set_bn_training, set_train_mode
from pipeline.quant.patches import only_present_conv_patterns
from pipeline.quant.quantizer import make_quantizer

log = logging.getLogger(__name__)

MAX_BATCH = 4096


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
    with only_present_conv_patterns():
        prepared = prepare_qat_pt2e(gm, quantizer) if qat else prepare_pt2e(gm, quantizer)
    setattr(prepared, FROZEN_BN_ATTR, False)
    if qat:
        move_exported_model_to_train(prepared)
    else:
        move_exported_model_to_eval(prepared)
    n_obs = sum(1 for _ in observers(prepared))
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


@torch.no_grad()
def calibrate(prepared: GraphModule, batches: Iterable[torch.Tensor]) -> int:
    """Run batches through the observers (eval mode, observers on); returns the batch count.

    Leaves the graph in eval mode. PTQ: histogram observers see every batch. QAT: the first batch
    sets each range, later ones move it by a moving average (constant 0.01).
    """
    device = _model_device(prepared)
    set_train_mode(prepared, False)
    from torchao.quantization.pt2e import enable_observer

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
    from torchao.quantization.pt2e import disable_observer

    prepared.apply(disable_observer)


def freeze_bn_stats(prepared: GraphModule) -> None:
    """Batch norm uses (and stops updating) its running statistics, also in train mode.

    Persists across :func:`set_train_mode`. Gamma/beta remain trainable.
    """
    setattr(prepared, FROZEN_BN_ATTR, True)
    n = set_bn_training(prepared, False)
    log.info("froze batch-norm statistics (%d batch-norm ops)", n)


def convert(prepared: GraphModule, inplace: bool = False) -> GraphModule:
    """``convert_pt2e``: Q/DQ graph with int8 weight tensors and BN folded into the convs.

    Puts ``prepared`` in eval mode first. By default converts a deep copy, so ``prepared`` can keep
    training or serve as the fake-quant reference. The result runs in torch (float math between
    Q/DQ pairs), exports to ONNX QDQ directly, and to int8 TFLite through
    :func:`unfold_quantized_weights`.
    """
    set_train_mode(prepared, False)
    model = prepared if inplace else copy.deepcopy(prepared)
    with only_present_conv_patterns():
        converted = convert_pt2e(model, fold_quantize=True)
    for m in converted.modules():
        m.training = False  # convert_pt2e disables .train()/.eval(); nothing in it depends on the flag
    log.info("converted: %s", quant_summary(converted))
    return converted

