"""Parameter and multiply-accumulate (MAC) counts, measured by forward hooks on one sample."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of one forward pass on ``example`` (batch 1): convolutions and linear layers.

    Element-wise ops, pooling and batch norm (folded at export) are not counted, as is usual for
    mobile model tables.
    """
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(mod: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * mod.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(example[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
