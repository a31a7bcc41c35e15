"""The table of networks, keyed by the short names the config uses (``teacher.arch``, ``distill.arch``).

``build_model(name, stats, width_mult)`` returns a module that takes raw inputs and answers in label
units; ``stats`` are the data stage's input/label statistics (``stats.json``), baked in as buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pipeline.models.layers import Affine, LabelScale
from pipeline.models.student import TwoHeadStudent, mlp_backbone, mobile_backbone
from pipeline.models.teacher import CnnTeacher, MlpTeacher


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "teacher" or "student"
    input_kind: str  # "image" or "vector"
    build: Callable[[dict, float], nn.Module]  # (stats, width_mult) -> module
    summary: str
    # Trains faster under bf16 autocast on a CPU with native bf16 (python -m benchmarks.train_precision):
    # the dense CNNs do; depthwise-separable students and small MLPs get slower.
    cpu_bf16_faster: bool = False


def _norm(stats: dict) -> Affine:
    """Per-feature normalization of vector inputs."""
    return Affine(stats["input_mean"], stats["input_std"])


def _image_norm(stats: dict) -> nn.Module:
    """Image networks take the [0, 1] pixels as they are: their first conv is followed by batch norm,
    which normalizes its output anyway, and without a float ``(x - mean) / std`` in front the int8
    artifacts start with one quantize of the raw pixels (``pixel - 128``; none with int8 I/O), and the
    float artifacts with the first conv (docs/benchmarks.md: what changed in the int8 graphs)."""
    return nn.Identity()


def _scale(stats: dict) -> LabelScale:
    return LabelScale(stats["label_mean"], stats["label_std"])


def _out(stats: dict) -> int:
    return len(stats["label_mean"])


def _cnn(widths: list[int], depth: int) -> Callable[[dict, float], nn.Module]:
    return lambda s, w: CnnTeacher([int(c * w) for c in widths], depth, _out(s), _image_norm(s), _scale(s))


def _mobile(stem: int, stages: list[tuple[int, int]]) -> Callable[[dict, float], nn.Module]:
    def build(s: dict, w: float) -> nn.Module:
        backbone, feat = mobile_backbone(stem, stages, w, _image_norm(s))
        return TwoHeadStudent(backbone, feat, _out(s), _scale(s))
    return build


def _mlp_student(width: int, depth: int) -> Callable[[dict, float], nn.Module]:
    def build(s: dict, w: float) -> nn.Module:
        backbone, feat = mlp_backbone(len(s["input_mean"]), int(width * w), depth, _norm(s))
        return TwoHeadStudent(backbone, feat, _out(s), _scale(s), hidden=int(width * w))
    return build


MOBILE_S = [(32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]

MODELS: dict[str, ModelSpec] = {m.name: m for m in [
    ModelSpec("cnn_l", "teacher", "image", _cnn([32, 64, 128, 256], 1),
              "residual CNN, widths 32-256, one basic block per scale", cpu_bf16_faster=True),
    ModelSpec("cnn_m", "teacher", "image", _cnn([24, 48, 96, 192], 1), "a narrower cnn_l", cpu_bf16_faster=True),
    # For slow CPUs: about 1.7x faster fp32 training steps than cnn_m on an AVX2-only CPU, 4.76 deg clean-test
    # MAE on the face preset against cnn_m's 4.52 (docs/results.md: default run on an AVX2-only CPU).
    # cpu_bf16_faster not set: not measured on a CPU with native bf16.
    ModelSpec("cnn_s", "teacher", "image", _cnn([16, 32, 64, 128], 1), "a narrower cnn_m"),
    ModelSpec("mlp_l", "teacher", "vector",
              lambda s, w: MlpTeacher(int(256 * w), 3, len(s["input_mean"]), _out(s), _norm(s), _scale(s)),
              "3 x 256 ReLU MLP"),
    ModelSpec("mobile_xs", "student", "image", _mobile(8, [(16, 2), (32, 2), (32, 1), (64, 2), (64, 1)]),
              "depthwise-separable, 5 blocks, stem 8"),
    ModelSpec("mobile_s", "student", "image", _mobile(16, MOBILE_S), "depthwise-separable, 6 blocks, stem 16"),
    ModelSpec("mobile_m", "student", "image", _mobile(24, [(48, 2), (48, 1), (96, 2), (96, 1), (192, 2),
                                                          (192, 1)]), "a wider mobile_s"),
    ModelSpec("mlp_s", "student", "vector", _mlp_student(32, 2), "2 x 32 ReLU MLP, two heads"),
]}


def build_model(name: str, stats: dict, width_mult: float = 1.0) -> nn.Module:
    return MODELS[name].build(stats, width_mult)
