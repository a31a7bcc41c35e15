"""Shared fixtures: a tiny sinusoid config that runs every stage in seconds; a tiny student from the real
model table; one smoke run through the CLI shared by every slow test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.models import MODELS, build_model
from pipeline.models.student import SingleOutput

TINY_SINUSOID = [
    "data.n_train=256", "data.n_val=64", "data.n_test=64",
    "teacher.train.epochs=2", "teacher.train.batch_size=64",
    "distill.train.epochs=2", "distill.train.batch_size=64",
    "qat.train.epochs=1", "qat.train.batch_size=64", "qat.calibration_batches=1",
    "qat.freeze_bn_epoch=0", "qat.freeze_observers_epoch=0",
    "export.formats=[onnx_fp32]", "threads=1",
]

# Data-stage statistics (stats.json) the tiny students bake in: ImageNet-like pixel statistics and
# head-pose-like label scales (tens of degrees, non-zero offsets), so output scaling is exercised.
TINY_STATS = {
    "image": {"input_mean": [0.485, 0.456, 0.406], "input_std": [0.229, 0.224, 0.225],
              "label_mean": [2.0, -3.0, 1.0], "label_std": [40.0, 25.0, 20.0]},
    "vector": {"input_mean": [0.0], "input_std": [2.0], "label_mean": [0.5], "label_std": [1.5]},
}


def make_tiny_student(arch: str = "mobile_xs", width_mult: float = 0.5, seed: int = 0,
                      head: str = "teacher") -> nn.Module:
    """The deployable student (``SingleOutput``) of ``arch`` from ``pipeline.models.MODELS``, in eval mode.

    Random weights; BatchNorm statistics measured on :func:`tiny_images` and random affine BN
    parameters, so BN folding is exercised; the last layer is scaled up so outputs vary between images
    by several label units (tens for image students). Image students take (N, 3, H, W) in [0, 1] and
    answer (N, 3); vector students (``mlp_s``) take (N, 1) and answer (N, 1).
    """
    spec = MODELS[arch]
    if spec.role != "student":
        raise ValueError(f"{arch} is a {spec.role}; use one of "
                         f"{', '.join(n for n, s in MODELS.items() if s.role == 'student')}")
    torch.manual_seed(seed)
    model = SingleOutput(build_model(arch, TINY_STATS[spec.input_kind], width_mult), head)
    if spec.input_kind == "image":  # BN statistics of real-looking inputs, as training would leave them
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # a plain average over the calibration batches
        model.train()
        with torch.no_grad():
            for i in range(2):
                model(tiny_images(32, seed=1000 + i))
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 0.1
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.1, 0.3)
    with torch.no_grad():
        model.head[-1].weight.mul_(4.0)
    return model.eval()


def tiny_images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """(n, 3, size, size) smooth random colour fields with per-image contrast, quantized like pixel / 255."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 6, generator=g)
    img = nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    img = (img - 0.5) * (0.5 + torch.rand(n, 1, 1, 1, generator=g)) + 0.5
    return (img.clamp(0, 1) * 255).round() / 255


@pytest.fixture
def tiny_sinusoid() -> list[str]:
    return list(TINY_SINUSOID)


@pytest.fixture(scope="session")
def tiny_student() -> Callable[..., nn.Module]:
    """``tiny_student(arch="mobile_xs", width_mult=0.5, seed=0, head="teacher") -> nn.Module``:
    a fresh :func:`make_tiny_student` per call."""
    return make_tiny_student


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in a subprocess, stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One ``python -m pipeline run smoke.yaml`` (2-3 min on two cores), shared by every slow test:
    (runs folder, the finished process with its stdout and stderr)."""
    out = tmp_path_factory.mktemp("runs")
    first = run_cli("run", "smoke.yaml", "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    return out, first
