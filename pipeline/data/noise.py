"""Label noise: Gaussian annotation noise plus a fraction of gross outliers, with the outlier mask kept.

The mask is what the TOR flagger is scored against on synthetic data. Outliers are chosen per sample
(a whole annotation is wrong, as with a mislabelled image); the mask is stored per output element
(N, D) so element-wise flaggers can be scored directly.
"""

from __future__ import annotations

import numpy as np


def inject_label_noise(clean: np.ndarray, *, std: float, outlier_fraction: float, mode: str,
                       low: np.ndarray, high: np.ndarray, offset_min: float, offset_max: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (noisy labels (N, D) float32, outlier mask (N, D) bool).

    Every label gets N(0, std) noise. An exact ``round(outlier_fraction * N)`` samples become outliers:
    ``uniform`` redraws each of their outputs over [low, high]; ``offset`` shifts each output by
    ±U(offset_min, offset_max).
    """
    rng = np.random.default_rng(seed)
    n, d = clean.shape
    noisy = clean + rng.normal(0.0, std, size=clean.shape) if std > 0 else clean.copy()
    n_out = int(round(outlier_fraction * n))
    idx = rng.permutation(n)[:n_out]
    mask = np.zeros((n, d), dtype=bool)
    mask[idx] = True
    if n_out:
        if mode == "uniform":
            noisy[idx] = rng.uniform(low, high, size=(n_out, d))
        elif mode == "offset":
            shift = rng.uniform(offset_min, offset_max, size=(n_out, d))
            noisy[idx] = clean[idx] + np.where(rng.random((n_out, d)) < 0.5, -shift, shift)
        else:
            raise ValueError(f"unknown outlier mode {mode!r}")
    return noisy.astype(np.float32), mask
