"""Each artifact's own error: run the artifact itself over the whole clean test split.

The torch model's error is not what users get: an int8 artifact computes with integer kernels and
its own rounding. This runs the artifact in its runtime (batched where the runtime allows) and
reports MAE per output and their mean, in label units.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

BATCH = 256


def _errors(pred: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    per = np.abs(pred.reshape(y.shape) - y).mean(0)
    return {"test_mae": round(float(per.mean()), 4),
            "test_mae_per_output": {n: round(float(v), 4) for n, v in zip(names, per, strict=True)}}


def artifact_errors(fmt: str, path: Path, meta_path: Path, x: np.ndarray, y: np.ndarray, names: list[str],
                    threads: int = 1) -> dict:
    """MAE of the artifact at ``path`` on NCHW float inputs ``x`` against labels ``y``."""
    from exporters.artifact_io import runtime_inputs, runtime_outputs
    from exporters.runtimes import open_runtime

    meta = json.loads(Path(meta_path).read_text())
    session = open_runtime(fmt, path, threads)
    try:
        preds = [runtime_outputs(session.run(runtime_inputs(x[i:i + BATCH], meta)), meta)
                 for i in range(0, len(x), BATCH)]
    finally:
        session.close()
    return _errors(np.concatenate(preds), y, names)


@torch.no_grad()
def torch_errors(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    """MAE of a torch model (float, or a converted int8 Q/DQ graph) on the same inputs."""
    preds = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + BATCH]))).float().numpy()
             for i in range(0, len(x), BATCH)]
    return _errors(np.concatenate(preds), y, names)
