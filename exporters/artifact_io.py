"""How data crosses an artifact's boundary, from its meta alone: layout, dtype and int8 (de)quantization.

NumPy only (no torch), so runtime workers and the Android golden files can use it without importing
the training stack. Quantization is done exactly as TFLite and torch do it (round-half-even, clamp).
"""

from __future__ import annotations

import numpy as np


def quantize_np(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Affine quantization as TFLite and torch do it: round-half-even, then clamp to the dtype."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_np(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, np.float64) - zero_point) * scale).astype(np.float32)


def io_quantization(entry: dict) -> tuple[float, int] | None:
    q = entry.get("quantization")
    return (float(q["scale"]), int(q["zero_point"])) if q else None


def runtime_inputs(x: np.ndarray, meta: dict) -> np.ndarray:
    """NCHW float inputs laid out and typed as the artifact expects."""
    inp = meta["input"]
    if x.ndim == 4 and inp["layout"] == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    q = io_quantization(inp)
    return np.ascontiguousarray(quantize_np(x, *q, inp["dtype"]) if q else x.astype(np.float32))


def runtime_outputs(y: np.ndarray, meta: dict) -> np.ndarray:
    """Artifact outputs in label units (dequantized when the output is quantized)."""
    q = io_quantization(meta["outputs"][0])
    y = dequantize_np(y, *q) if q else np.asarray(y, np.float32)
    return y.reshape(y.shape[0], -1)
