"""The paper's 1-D toy regression: y = amplitude * sin(frequency * x) with the same label-noise model.

Inputs are x ~ U(-x_range, x_range) as a (N, 1) float32 array; the single output is named ``y``.
Used by ``sinusoid.yaml`` to check the method quickly on a problem whose ground truth is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.schema import option


@dataclass
class SinusoidConfig:
    x_range: float = option(3.14159, "inputs drawn from U(-x_range, x_range)", min=0.01)
    amplitude: float = option(10.0, "label amplitude (label units)", min=0)
    frequency: float = option(2.0, "angular frequency of the sinusoid", min=0)


def generate(n: int, seed: int, cfg: SinusoidConfig) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, 1) float32, clean labels (n, 1) float32); deterministic by seed."""
    rng = np.random.default_rng([seed, 7])
    x = rng.uniform(-cfg.x_range, cfg.x_range, size=(n, 1)).astype(np.float32)
    y = (cfg.amplitude * np.sin(cfg.frequency * x)).astype(np.float32)
    return x, y


def label_range(cfg: SinusoidConfig) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest possible clean label per output (outliers are drawn in this range)."""
    return np.array([-cfg.amplitude], np.float32), np.array([cfg.amplitude], np.float32)
