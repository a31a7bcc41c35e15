"""Two-headed mobile students: a shared depthwise-separable backbone with a label head and a teacher head.

``forward`` returns both heads, ``(label_pred, teacher_pred)``, in label units. Single-head
baselines train only the label head. :class:`SingleOutput` wraps a trained student so it answers with
one chosen head (``teacher``, ``label`` or ``mean``); that module is what QAT and export consume.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.layers import Affine, LabelScale, conv_bn, global_pool


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
        return global_pool(z) if z.dim() == 4 else z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.scale(self.label_head(z)), self.scale(self.teacher_head(z))


def mobile_backbone(stem: int, stages: list[tuple[int, int]], width_mult: float, norm: nn.Module
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


def select_head(outputs: tuple[torch.Tensor, torch.Tensor], head: str) -> torch.Tensor:
    """One head's answer from a two-headed forward: ``label``, ``teacher`` or their ``mean``."""
    label, teacher = outputs
    return {"label": label, "teacher": teacher}[head] if head != "mean" else 0.5 * (label + teacher)


class SingleOutput(nn.Module):
    """The deployable student: backbone -> Linear -> ReLU -> Linear, one output (N, D) in label units.

    Built from a trained two-headed student with the chosen head's weights copied, and the label
    scaling (``z * scale + offset``) folded into the last Linear. Folding matters for int8: a separate
    quantized multiply by the label scale (tens of degrees) would amplify every one-step rounding flip
    of the standardized output; folded, the output is quantized once, in degrees. ``mean`` stacks both
    heads side by side (hidden units concatenated) and averages them in the last Linear.
    """

    def __init__(self, student: TwoHeadStudent, head: str):
        super().__init__()
        if head not in ("teacher", "label", "mean"):
            raise ValueError(f"unknown head {head!r}")
        self.head_name = head
        self.backbone = student.backbone
        heads = {"label": [student.label_head], "teacher": [student.teacher_head],
                 "mean": [student.label_head, student.teacher_head]}[head]
        firsts = [h.net[0] for h in heads]
        lasts = [h.net[2] for h in heads]
        first = nn.Linear(firsts[0].in_features, sum(f.out_features for f in firsts))
        last = nn.Linear(first.out_features, lasts[0].out_features)
        scale = student.scale.scale.view(-1, 1)
        with torch.no_grad():
            first.weight.copy_(torch.cat([f.weight for f in firsts]))
            first.bias.copy_(torch.cat([f.bias for f in firsts]))
            last.weight.copy_(torch.cat([lin.weight for lin in lasts], dim=1) * scale / len(heads))
            last.bias.copy_(sum(lin.bias for lin in lasts) / len(heads) * scale.view(-1)
                            + student.scale.offset.view(-1))
        self.head = nn.Sequential(first, nn.ReLU(), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.backbone(x)
        if z.dim() == 4:
            z = global_pool(z)
        return self.head(z)


HEADS = ("label", "teacher", "mean")


def auto_head(val_mae_by_head: dict[str, float]) -> str:
    """``inference_head: auto``: the head with the lowest noisy-validation MAE (on unflagged samples)."""
    return min(HEADS, key=lambda h: val_mae_by_head[h])
