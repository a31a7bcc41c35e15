"""What the command line prints: the pipeline's own log lines, without known third-party noise.

Why: a first run printed, before the pipeline's first line, torchao's failures to load optional CUDA
kernels (with full site-packages paths), "Detected no triton", a torch ``_pytree`` deprecation; then
dozens of torch ``FutureWarning``s, TFLite converter C++ lines and seven coremltools progress bars per
CoreML artifact. None of it is actionable for a user of the pipeline and all of it reads as "something
is broken". :func:`setup_console` keeps the project's loggers at INFO and its progress bars, and quiets
exactly those sources (the coremltools bars are hidden by :mod:`exporters.coreml` unless it logs at
DEBUG); ``--verbose`` (``verbose=True``) leaves every third-party source as its library configured it
and puts the project's loggers at DEBUG.
"""

from __future__ import annotations

import logging
import os
import warnings

PROJECT_LOGGERS = ("pipeline", "exporters", "benchmarks")

# Third-party loggers whose WARNING/INFO lines are known noise here; their errors still show.
NOISY_LOGGERS = (
    "torchao",  # "Failed to load .../torchao/_C_*.so" (CUDA-only kernels), "Detected no triton"
    "torch.utils._pytree",  # "Calling register_constant() on Enum subclasses is deprecated" (from torchao)
    "torch.onnx",  # "torchvision is not installed. Skipping torchvision::nms" and friends
    "torch._export", "torch.export",  # graph-capture notes during ONNX / CoreML / LiteRT conversion
    "coremltools",  # "Failed to load _MLModelProxy" (the macOS-only runtime) and conversion notes
    "onnxscript", "absl", "tensorflow", "jax", "litert_torch",
)

# Developer-facing warning categories: addressed to the authors of the code that triggers them
# (torch's LeafSpec deprecation is raised from copyreg while models are copied), not to its users.
QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)

# Native libraries read these at load time, so they are set before the first import that loads them.
# TF_CPP_MIN_LOG_LEVEL=2 drops the TFLite converter's C++ INFO lines ("Estimated count of arithmetic
# ops"). Not reachable from here: TensorFlow's absl start-up pair ("All log messages before
# absl::InitializeLog() ...", "oneDNN custom operations are on"), printed by each native library that
# bundles TF when it loads, and LiteRT's "Created TensorFlow Lite XNNPACK delegate"; they are written
# to file descriptor 2 by C++ before any setting is read.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_console(verbose: bool = False) -> None:
    """Configure logging and warnings for a command-line run (call once, first thing in ``main``)."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT, datefmt="%H:%M:%S")
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)  # an explicit setting by the user wins
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in QUIET_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    # Worker processes (``ablate --jobs``) start from the environment, not from this process's filters.
    os.environ.setdefault("PYTHONWARNINGS", ",".join(f"ignore::{c.__name__}" for c in QUIET_CATEGORIES))

