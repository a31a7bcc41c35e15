"""Teacher networks: a residual CNN for face crops and a wide MLP for vector inputs.

The teacher is trained on noisy labels and early-stopped on the noisy validation split; it only has
to be accurate, not fast, but its training must fit the CPU budget (see docs/results.md: teacher figures).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.layers import LabelScale, conv_bn


class ResidualBlock(nn.Module):
    """Two 3x3 convs with a skip connection (ResNet basic block, stride 1)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class CnnTeacher(nn.Module):
    """Stride-2 downsampling convs, each followed by ``depth`` residual blocks, then pool and an MLP."""

    def __init__(self, widths: list[int], depth: int, out_dim: int, norm: nn.Module, scale: LabelScale):
        super().__init__()
        layers: list[nn.Module] = [norm]
        cin = 3
        for w in widths:
            layers.append(conv_bn(cin, w, stride=2))
            layers += [ResidualBlock(w) for _ in range(depth)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin, 256), nn.ReLU(), nn.Dropout(0.1),
                                  nn.Linear(256, out_dim))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x).mean(dim=(2, 3))
        return self.scale(self.head(z))


class MlpTeacher(nn.Module):
    def __init__(self, width: int, depth: int, in_dim: int, out_dim: int, norm: nn.Module, scale: LabelScale):
        super().__init__()
        layers: list[nn.Module] = [norm]
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.net(x))
