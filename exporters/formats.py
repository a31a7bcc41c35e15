"""The table of export formats: every artifact the pipeline can ship, one row each, keyed by name.

Config validation (``export.formats`` lists names from :data:`FORMATS`) and its defaults
(:data:`DEFAULT_FORMATS`, :data:`TEACHER_FORMATS`), the exporters, the parity check, the benchmarks,
the sweep and the report all read this one module, so adding a format is adding a row (and, for a new
family, one entry in :data:`FAMILIES`). Nothing else in the code base lists formats
(tests/test_tables.py checks).

A row says which family writes it (``onnx``, ``tflite``, ``coreml``, ``executorch``), at which precision, under which
file suffix, which Python runtime verifies it, how the input is laid out (NCHW for ONNX and CoreML,
NHWC for TFLite on phones), whether it is built from the int8 (PT2E-converted) model, and the parity
tolerance in label units. Tolerances are per precision; :data:`TOLERANCES` carries the reasoning.

This module imports nothing heavy: family modules are imported only when a format is exported.

Run ``python -m exporters.formats`` to print the table and what can run on this machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """Largest allowed |artifact - torch| over all parity samples and outputs, in label units."""

    max_abs: float
    why: str
    # Also bound the mean |diff| (int8): rare one-step flips may pile up at one output, but a broken
    # graph moves every output.
    mean_abs: float | None = None


# Output magnitudes are up to ~90 degrees (yaw); figures below are in degrees.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(1e-3, "fp32 keeps 24 bits (2^-24 ~ 6e-8 relative); other summation orders, BN "
                            "folding and Winograd kernels over ~1e3-term dot products and ~20 layers reach "
                            "~1e-6 relative, ~1e-4 deg at 90 deg: 1e-3 deg leaves 10x headroom"),
    "fp16": Tolerance(0.5, "fp16 keeps 11 significant bits (half-ulp 2^-12 ~ 2.4e-4 relative per rounding); "
                           "~20 rounded stages (weights, and activations on CoreML) on outputs up to 90 deg "
                           "bound the drift near 20 * 2.4e-4 * 90 ~ 0.45 deg"),
    "int8": Tolerance(4.5, "compared with the converted PT2E torch model (fake-quant float): integer kernels "
                           "accumulate in int32 and requantize with fixed-point multipliers, so values on a "
                           "rounding boundary flip by one step, and flips in the pooled features reach the output "
                           "as several output steps of ~180/255 ~ 0.7 deg. Measured on the default student: "
                           "onnxruntime and LiteRT agree with each other exactly and differ from the torch "
                           "reference by mean 0.52 / max 2.74 deg over 32 images; 4.5 deg (~6 steps) max and "
                           "1.0 deg mean leave headroom, while a broken graph is off by tens of degrees",
                      mean_abs=1.0),
    "int8_fp16": Tolerance(6.0, "int8 weights and activations with float16 arithmetic between them (CoreML's "
                                "Neural-Engine-eligible form), compared with the PT2E torch model that computes "
                                "in float32: fp16 rounding (2.4e-4 relative) moves more pre-quantization values "
                                "across a rounding boundary than integer kernels do; measured on the default "
                                "student: mean 0.77, max 4.1 deg over 32 images", mean_abs=1.5),
}
# An artifact with a quantized (int8) output is compared on that output's grid: its tolerance is at least
# this many output steps (scale from the artifact's meta), whatever the table says.
OUTPUT_STEPS_TOLERANCE = 3


@dataclass(frozen=True)
class Family:
    """How one family is exported and inspected: ``module:function`` names, imported lazily.

    ``export(model, sample, out_dir, options) -> Path``; ``read_meta(path) -> dict | None`` returns
    the meta embedded in the artifact (None when this family cannot read it back here). Artifacts are
    run through ``exporters.runtimes.open_runtime``.
    """

    name: str
    export: str
    read_meta: str
    requires: tuple[str, ...]  # importable modules needed to export
    tools: tuple[str, ...]  # distributions whose versions go into the artifact's meta
    extra: str = ""  # the pip extra that installs ``requires`` when it is not a default dependency
    describe: str = ""  # ``module:function(path) -> dict | None``: what the export report adds about a file
    session: str = ""  # ``module:Class(path, threads)``: the runtime session parity and the benchmarks use


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("onnx", "exporters.onnx:export_onnx", "exporters.onnx:read_onnx_meta",
           ("onnx", "onnxscript", "onnxsim"), ("torch", "onnx", "onnxscript", "onnxsim", "onnxruntime", "torchao"),
           session="exporters.runtimes:OnnxSession"),
    Family("tflite", "exporters.tflite:export_tflite", "exporters.tflite:read_tflite_meta", ("litert_torch", "ai_edge_quantizer"),
           ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao"),
           session="exporters.runtimes:TfliteSession"),
    Family("coreml", "exporters.coreml_bridge:export", "exporters.coreml_bridge:read_meta", ("exporters.coreml", "coremltools"),
           ("torch", "coremltools", "torchao"), session="exporters.runtimes:CoremlSession"),
    Family("executorch", "exporters.executorch:export_executorch", "exporters.executorch:read_executorch_meta",
           ("executorch",), ("torch", "executorch", "torchao"), extra="executorch",
           describe="exporters.executorch:describe", session="exporters.executorch:ExecutorchSession"),
]}


@dataclass(frozen=True)
class Format:
    """One artifact kind. ``runtime`` is the Python module that verifies it (checked with find_spec)."""

    name: str
    family: str
    precision: str  # "fp32" | "fp16" | "int8"
    suffix: str  # ".onnx", ".tflite", ".mlpackage" (a folder)
    runtime: str
    layout: str  # image input layout in this artifact: "NCHW" | "NHWC"
    needs_int8_model: bool
    int8_io: bool = False  # can take int8 input/output tensors (ExportOptions.int8_io)
    tolerance_key: str = ""  # a TOLERANCES row other than the precision's, when the arithmetic differs
    default: bool = True  # in export.formats' default (False: a row whose exporter is an optional extra)

    @property
    def tolerance(self) -> float:
        return TOLERANCES[self.tolerance_key or self.precision].max_abs

    @property
    def mean_tolerance(self) -> float | None:
        return TOLERANCES[self.tolerance_key or self.precision].mean_abs

    @property
    def tolerance_why(self) -> str:
        return TOLERANCES[self.tolerance_key or self.precision].why

    @property
    def family_row(self) -> Family:
        return FAMILIES[self.family]


def _row(family: str, precision: str, suffix: str, runtime: str, layout: str, int8_io: bool = False,
         tolerance_key: str = "", default: bool = True) -> Format:
    return Format(f"{family}_{precision}", family, precision, suffix, runtime, layout, precision == "int8",
                  int8_io, tolerance_key, default)


FORMATS: dict[str, Format] = {f.name: f for f in [
    _row("onnx", "fp32", ".onnx", "onnxruntime", "NCHW"),
    _row("onnx", "int8", ".onnx", "onnxruntime", "NCHW"),
    _row("tflite", "fp32", ".tflite", "ai_edge_litert", "NHWC"),
    _row("tflite", "fp16", ".tflite", "ai_edge_litert", "NHWC"),
    _row("tflite", "int8", ".tflite", "ai_edge_litert", "NHWC", int8_io=True),
    # On macOS MLModel.predict verifies; on Linux exporters.coreml evaluates the MIL program itself.
    _row("coreml", "fp32", ".mlpackage", "coremltools", "NCHW"),
    _row("coreml", "fp16", ".mlpackage", "coremltools", "NCHW"),
    _row("coreml", "int8", ".mlpackage", "coremltools", "NCHW", tolerance_key="int8_fp16"),
    # XNNPACK runs the int8 Q/DQ graph with integer kernels, like LiteRT's: the int8 tolerance holds.
    _row("executorch", "fp32", ".pte", "executorch.runtime", "NCHW"),
    _row("executorch", "int8", ".pte", "executorch.runtime", "NCHW"),
]}

# The defaults of export.formats and export.teacher_formats (pipeline.config reads them from here).
DEFAULT_FORMATS: tuple[str, ...] = tuple(n for n, f in FORMATS.items() if f.default)
# The artifact shipped to phones, and the teacher artifact it is measured against: the benchmark's
# headline ratios, the sweep's choice of student and the report's headline compare these two.
SHIPPED_FORMAT = "tflite_int8"
TEACHER_REFERENCE_FORMAT = "tflite_fp32"
# The teacher in float on both host runtimes the student's int8 artifacts are timed on (CoreML is not
# timed off macOS), so student/teacher ratios are measured on each.
TEACHER_FORMATS: tuple[str, ...] = ("onnx_fp32", TEACHER_REFERENCE_FORMAT)


@dataclass
class ExportOptions:
    """Knobs of one export. ``export_all`` fills ``format`` and ``meta`` per artifact.

    ``meta`` is the artifact's meta dict (see :mod:`exporters.metadata`); the exporter embeds it and
    completes it in place with what is only known after conversion (e.g. TFLite I/O quantization).
    """

    format: str = ""
    meta: dict = field(default_factory=dict)
    int8_io: bool = False  # int8 input/output tensors where the format can (Format.int8_io), else float
    output_range: tuple[float, float] | None = None  # int8 output quantization range (label units)
    opset: int = 18
    simplify: bool = True  # run onnxsim on ONNX graphs
    tolerances: dict[str, float] = field(default_factory=dict)  # per-format overrides of the table

    def tolerance(self, name: str) -> float:
        return float(self.tolerances.get(name, FORMATS[name].tolerance))


def has_module(name: str) -> bool:
    """True when ``name`` (possibly dotted) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _install_hint(fmt: Format) -> str:
    extra = fmt.family_row.extra
    return f"; install it with: pip install -e \".[{extra}]\"" if extra else ""


def missing_for_export(fmt: Format) -> str | None:
    """Why ``fmt`` cannot be exported here (a missing module), or None."""
    missing = [m for m in fmt.family_row.requires if not has_module(m)]
    return f"not installed / not available: {', '.join(missing)}{_install_hint(fmt)}" if missing else None


def missing_runtime(fmt: Format) -> str | None:
    """Why ``fmt`` cannot be verified here (its runtime is missing), or None."""
    return None if has_module(fmt.runtime) else f"runtime {fmt.runtime!r} is not installed{_install_hint(fmt)}"


def installed_formats(names: list[str]) -> list[str]:
    """``names`` without the formats of optional families (``Family.extra``) whose extra is not installed.

    Why: the default format list includes ExecuTorch's rows, which need an extra; a default install
    without it should write every other artifact rather than fail two rows in every run."""
    return [n for n in names if not FORMATS[n].family_row.extra or missing_for_export(FORMATS[n]) is None]


def resolve(ref: str) -> Callable[..., Any]:
    """Import ``module:function`` and return the function."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def exporter(fmt: Format) -> Callable[..., Any]:
    return resolve(fmt.family_row.export)


def meta_reader(fmt: Format) -> Callable[..., Any]:
    return resolve(fmt.family_row.read_meta)


def main() -> None:
    print(f"{'name':<16} {'family':<10} {'prec':<5} {'suffix':<10} {'layout':<6} {'int8':<5} "
          f"{'tol':>7}  runtime / availability")
    for f in FORMATS.values():
        why = missing_for_export(f) or missing_runtime(f) or "ok"
        print(f"{f.name:<16} {f.family:<10} {f.precision:<5} {f.suffix:<10} {f.layout:<6} "
              f"{str(f.needs_int8_model):<5} {f.tolerance:>7g}  {f.runtime}: {why}")
    for p, t in TOLERANCES.items():
        print(f"\n{p}: {t.max_abs:g} label units - {t.why}")


if __name__ == "__main__":
    main()
