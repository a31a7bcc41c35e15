"""Error metrics in label units: MAE per output and mean, RMSE; plus checkpoint loading helpers."""

from __future__ import annotations

import numpy as np


def errors(pred: np.ndarray, y: np.ndarray, names: list[str], prefix: str = "test") -> dict:
    """``{prefix}_mae`` (mean over outputs), ``{prefix}_mae_per_output`` and ``{prefix}_rmse``."""
    abs_err = np.abs(pred - y)
    per = abs_err.mean(0)
    return {f"{prefix}_mae": round(float(per.mean()), 4),
            f"{prefix}_mae_per_output": {n: round(float(v), 4) for n, v in zip(names, per, strict=True)},
            f"{prefix}_rmse": round(float(np.sqrt(((pred - y) ** 2).mean())), 4)}


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(pred - y).mean())
