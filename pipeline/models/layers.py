"""Building blocks shared by teacher and student networks.

Every network takes raw inputs (images as RGB floats in [0, 1], NCHW; vectors as they come) and
returns labels in label units (degrees for pose). Normalization of the input and scaling of the
output live inside the model as buffers, so every exported artifact has the same simple contract.
"""

from __future__ import annotations

import torch
from torch import nn


class Affine(nn.Module):
    """y = (x - mean) / std per channel (dim 1), with constant buffers; exports as sub + mul."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        shape = (1, len(mean))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(*shape))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self.mean, self.inv_std
        if x.dim() == 4:
            mean, inv_std = mean.view(1, -1, 1, 1), inv_std.view(1, -1, 1, 1)
        return (x - mean) * inv_std


class LabelScale(nn.Module):
    """y = z * scale + offset: heads predict standardized labels, the model answers in label units."""

    def __init__(self, offset: list[float], scale: list[float]):
        super().__init__()
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32).view(1, -1))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.offset


def global_pool(z: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) spatial mean, written as adaptive average pooling: it exports as ONNX
    ``GlobalAveragePool`` (which onnxruntime runs in int8 and in its NHWC layout, where ``ReduceMean``
    over H, W needs a float round trip and a transpose back to NCHW)."""
    return nn.functional.avg_pool2d(z, z.shape[2:]).flatten(1)


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, k: int = 3,
            act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())
