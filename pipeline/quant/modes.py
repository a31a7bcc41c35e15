"""Train/eval switching that works for ordinary modules and for ``torch.export`` graphs alike.

Kept apart from the rest of the quantization package so that the generic training loop can import
it without importing torchao: torchao is imported only when an exported graph is switched.
"""

from __future__ import annotations

import torch
from torch import nn

FROZEN_BN_ATTR = "_quant_bn_frozen"
_BN_TRAINING_ARG = 5  # aten.batch_norm(input, weight, bias, mean, var, training, momentum, eps, cudnn)


def set_bn_training(prepared: nn.Module, training: bool) -> int:
    """Set the ``training`` flag of every ``aten.batch_norm`` call in an exported graph; returns the count."""
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


def set_train_mode(prepared: nn.Module, train: bool) -> None:
    """Train/eval mode for any module: ``.train(train)`` for ordinary modules; for torch.export graphs
    (which refuse ``.train()``) torchao's ``move_exported_model_to_train/eval``, keeping a BN freeze."""
    try:  # an exported graph raises before changing anything
        prepared.train(train)
        return
    except NotImplementedError:
        pass
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    if train:
        move_exported_model_to_train(prepared)
        if getattr(prepared, FROZEN_BN_ATTR, False):
            set_bn_training(prepared, False)
    else:
        move_exported_model_to_eval(prepared)
    for m in prepared.modules():  # the flag itself, for code that looks at .training
        m.training = train
