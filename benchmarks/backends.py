"""The table of benchmark backends, by the names ``benchmark.backends`` and ``--backends`` use.

A leaf module (no project imports), so config validation can read it without importing the harness.
The config's default, the harness's availability check and the format -> backend mapping all come
from this one table; nothing else lists backends (tests/test_tables.py checks).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    what: str  # what it runs
    module: str  # the Python module this host needs to run it ("" for a phone over adb)
    family: str = ""  # the exporter family whose artifacts it runs on the host ("": none, or not on the host)
    system: str = ""  # the only platform.system() it runs on ("": any)
    # modules the benchmark worker imports before loading a model, so load_ms times the model, not the library
    preload: tuple[str, ...] = ()


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("torch", "the PyTorch models themselves (float student, converted int8 student, teacher), eager, CPU",
            "torch", preload=("torch", "benchmarks.models")),
    Backend("onnxruntime", "ONNX artifacts in onnxruntime's CPU execution provider", "onnxruntime", "onnx",
            preload=("onnxruntime",)),
    Backend("litert", "TFLite artifacts in the LiteRT interpreter (XNNPACK) on the host CPU", "ai_edge_litert",
            "tflite", preload=("ai_edge_litert.interpreter",)),
    Backend("coreml", "CoreML packages with MLModel.predict (macOS only; skipped elsewhere)", "coremltools", "coreml",
            "Darwin", preload=("coremltools",)),
    Backend("executorch", "ExecuTorch .pte programs in executorch.runtime (XNNPACK delegate) on the host CPU",
            "executorch.runtime", "executorch", preload=("exporters.executorch", "executorch.runtime")),
    Backend("android", "TFLite artifacts on a phone over adb with benchmark_model", ""),
]}
# exporter family -> the host backend that runs its artifacts
FAMILY_BACKEND: dict[str, str] = {b.family: b.name for b in BACKENDS.values() if b.family}
