"""Parity: run each artifact in its runtime on fixed inputs and compare with the torch model it came from.

Why: a conversion can succeed and still compute something else (a dropped normalization, a layout
mix-up, a wrong quantization parameter). Every artifact is checked on the same real test images
against its source, in label units, against the formats table's tolerance.

How: fp32/fp16 artifacts are compared with the float model; int8 artifacts with the PT2E-converted
torch model (fake-quant float arithmetic), and its own distance to the float model is reported for
information. Inputs are laid out (NCHW -> NHWC) and quantized as the artifact's meta says; int8
outputs are dequantized with the meta's parameters, and the torch reference sees the same I/O
quantization; the tolerance is then at least ``OUTPUT_STEPS_TOLERANCE`` steps of the output grid. A missing runtime gives status ``skipped`` with the reason. Used by ``export_all``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exporters.artifact_io import dequantize_np, io_quantization, quantize_np, runtime_inputs, runtime_outputs
from exporters.formats import FORMATS, OUTPUT_STEPS_TOLERANCE, Format, missing_runtime
from exporters.runtimes import open_runtime

log = logging.getLogger(__name__)


@dataclass
class ParityResult:
    """Outcome of one artifact's check; distances in label units over all samples and outputs."""

    format: str
    status: str  # "passed" | "failed" | "skipped"
    reason: str = ""
    max_abs: float | None = None
    mean_abs: float | None = None
    tolerance: float | None = None
    how: str = ""  # the runtime that produced the artifact's outputs
    reference: str = ""  # which torch model the artifact is compared with
    n_samples: int = 0
    # int8 artifacts only, for information: the converted torch model and the artifact vs the float model.
    int8_torch_vs_float_max_abs: float | None = None
    int8_torch_vs_float_mean_abs: float | None = None
    artifact_vs_float_max_abs: float | None = None
    artifact_vs_float_mean_abs: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class ParityError(RuntimeError):
    """One or more artifacts differ from their torch model by more than the tolerance."""

    def __init__(self, failures: list[ParityResult], report: Path | None = None):
        self.failures = failures
        lines = [f"{r.format}: max |artifact - torch| = {r.max_abs:.4g} (mean {r.mean_abs:.3g}) exceeds the "
                 f"tolerance {r.tolerance:g} label units ({r.how}; reference: {r.reference})"
                 if r.max_abs is not None else f"{r.format}: {r.reason}" for r in failures]
        where = f"; see {report}" if report else ""
        super().__init__("parity check failed" + where + "\n  " + "\n  ".join(lines))


@torch.no_grad()
def torch_outputs(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """``model(x)`` as float32 numpy; one sample at a time when the graph only takes batch 1."""
    try:
        y = model(x)
    except (RuntimeError, AssertionError) as exc:  # e.g. a converted graph with a batch-size guard
        log.debug("batched torch call failed (%s); running one sample at a time", exc)
        y = torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])
    return y.detach().float().cpu().numpy()


def reference_outputs(model: nn.Module, x: np.ndarray, meta: dict) -> np.ndarray:
    """The torch model's outputs with the artifact's I/O quantization applied to its input and output."""
    in_q, out_q = io_quantization(meta["input"]), io_quantization(meta["outputs"][0])
    if in_q:
        x = dequantize_np(quantize_np(x, *in_q, meta["input"]["dtype"]), *in_q)
    y = torch_outputs(model, torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    if out_q:
        y = dequantize_np(quantize_np(y, *out_q, meta["outputs"][0]["dtype"]), *out_q)
    return y.reshape(y.shape[0], -1)


def _dist(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(d.max()), float(d.mean())


def parity_tolerance(fmt: Format, meta: dict, tolerance: float | None = None) -> float:
    """Largest allowed max |diff|: ``tolerance`` or the table's, and with a quantized (int8) output at
    least ``OUTPUT_STEPS_TOLERANCE`` steps of its grid, since both sides are rounded to it."""
    tol = fmt.tolerance if tolerance is None else float(tolerance)
    out_q = io_quantization(meta["outputs"][0])
    return max(tol, OUTPUT_STEPS_TOLERANCE * out_q[0]) if out_q else tol


def pick_reference(fmt: Format, float_model: nn.Module, int8_model: nn.Module | None) -> tuple[nn.Module | None, str]:
    """The torch model an artifact of ``fmt`` is compared with, and its name for reports."""
    if fmt.needs_int8_model:
        return int8_model, "int8 (PT2E-converted) torch model"
    return float_model, "float torch model"


def check_parity(fmt: Format | str, path: Path, meta: dict, inputs: torch.Tensor, float_model: nn.Module,
                 int8_model: nn.Module | None = None, tolerance: float | None = None) -> ParityResult:
    """Run the artifact at ``path`` on ``inputs`` (NCHW) and compare with its torch source."""
    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    tol = parity_tolerance(fmt, meta, tolerance)
    x = inputs.detach().float().cpu().numpy()
    reason = missing_runtime(fmt)
    if reason:
        return ParityResult(fmt.name, "skipped", reason, tolerance=tol, n_samples=len(x))
    reference, ref_name = pick_reference(fmt, float_model, int8_model)
    if reference is None:
        return ParityResult(fmt.name, "skipped", "no reference torch model", tolerance=tol, n_samples=len(x))
    try:
        session = open_runtime(fmt, Path(path), threads=1)
        try:
            raw = session.run(runtime_inputs(x, meta))
        finally:
            session.close()
        how = session.how
    except Exception as exc:  # the artifact does not load or run: a failure, reported with the error
        log.exception("%s did not run in %s", fmt.name, fmt.runtime)
        return ParityResult(fmt.name, "failed", f"runtime: {type(exc).__name__}: {str(exc)[:1000]}",
                            tolerance=tol, reference=ref_name, n_samples=len(x))
    return compare_outputs(fmt, runtime_outputs(raw, meta), x, meta, float_model, reference, ref_name, tol, how)


def compare_outputs(fmt: Format, got: np.ndarray, x: np.ndarray, meta: dict, float_model: nn.Module,
                    reference: nn.Module, ref_name: str, tol: float, how: str) -> ParityResult:
    """Judge an artifact's outputs ``got`` (label units, from ``runtime_outputs``) on NCHW inputs ``x``
    against ``reference`` (see :func:`pick_reference`) within ``tol`` and the table's mean tolerance."""
    want = reference_outputs(reference, x, meta)
    if got.shape != want.shape:
        return ParityResult(fmt.name, "failed", f"output shape {got.shape} != torch {want.shape}", how=how,
                            reference=ref_name, tolerance=tol, n_samples=len(x))
    max_abs, mean_abs = _dist(got, want)
    mean_tol = fmt.mean_tolerance
    problems = []
    if not (np.isfinite(max_abs) and max_abs <= tol):
        problems.append(f"max abs diff {max_abs:.4g} > tolerance {tol:g}")
    if mean_tol is not None and not mean_abs <= mean_tol:
        problems.append(f"mean abs diff {mean_abs:.4g} > mean tolerance {mean_tol:g}")
    ok = not problems
    result = ParityResult(fmt.name, "passed" if ok else "failed", "; ".join(problems),
                          max_abs, mean_abs, tol, how, ref_name, len(x))
    if fmt.needs_int8_model:
        float_y = torch_outputs(float_model, torch.from_numpy(x)).reshape(len(x), -1)
        result.int8_torch_vs_float_max_abs, result.int8_torch_vs_float_mean_abs = _dist(
            torch_outputs(reference, torch.from_numpy(x)).reshape(len(x), -1), float_y)
        result.artifact_vs_float_max_abs, result.artifact_vs_float_mean_abs = _dist(got, float_y)
    log.info("%s parity %s: max %.3g mean %.3g (tol %g) via %s", fmt.name, result.status, max_abs, mean_abs,
             tol, how)
    return result
