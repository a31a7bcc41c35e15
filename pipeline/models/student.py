"""Two-headed mobile students: a shared depthwise-separable backbone with a label head and a teacher head.

``forward`` returns both heads, ``(label_pred, teacher_pred)``, in label units. Single-head
baselines train only the label head. :class:`SingleOutput` wraps a trained student so it answers with
one chosen head (``teacher``, ``label`` or ``mean``); that module is what QAT and export consume.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.layers import Affine, LabelScale, conv_bn


def _round8(x: float) -> int:
    """Channel counts rounded to multiples of 8 (SIMD-friendly on phone CPUs)."""
    return max(8, int(x + 4) // 8 * 8)


def dw_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNet-v1 block: 3x3 depthwise conv, then 1x1 pointwise conv, each with BN + ReLU6."""
    return nn.Sequential(conv_bn(cin, cin, stride, groups=cin, act=nn.ReLU6),
                         conv_bn(cin, cout, 1, k=1, act=nn.ReLU6))


class Head(nn.Module):
    def __init__(self, cin: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class TwoHeadStudent(nn.Module):
    def __init__(self, backbone: nn.Module, feat_dim: int, out_dim: int, scale: LabelScale, hidden: int = 64):
        super().__init__()
        self.backbone = backbone
        self.label_head = Head(feat_dim, hidden, out_dim)
        self.teacher_head = Head(feat_dim, hidden, out_dim)
        self.scale = scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.backbone(x)
        return z.mean(dim=(2, 3)) if z.dim() == 4 else z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.scale(self.label_head(z)), self.scale(self.teacher_head(z))


def mobile_backbone(stem: int, stages: list[tuple[int, int]], width_mult: float, norm: Affine
                    ) -> tuple[nn.Sequential, int]:
    """Stem conv (stride 2), then (channels, stride) depthwise-separable blocks."""
    c = _round8(stem * width_mult)
    layers: list[nn.Module] = [norm, conv_bn(3, c, stride=2, act=nn.ReLU6)]
    for cout, stride in stages:
        cout = _round8(cout * width_mult)
        layers.append(dw_separable(c, cout, stride))
        c = cout
    return nn.Sequential(*layers), c


def mlp_backbone(in_dim: int, width: int, depth: int, norm: Affine) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [norm]
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers), d


class SingleOutput(nn.Module):
    """The deployable student: one output tensor (N, D) in label units from the chosen head."""

    def __init__(self, student: TwoHeadStudent, head: str):
        super().__init__()
        if head not in ("teacher", "label", "mean"):
            raise ValueError(f"unknown head {head!r}")
        self.student = student
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.student.features(x)
        if self.head == "label":
            return self.student.scale(self.student.label_head(z))
        if self.head == "teacher":
            return self.student.scale(self.student.teacher_head(z))
        # Average before scaling: same result, one fewer op in the exported graph.
        return self.student.scale(0.5 * (self.student.label_head(z) + self.student.teacher_head(z)))
