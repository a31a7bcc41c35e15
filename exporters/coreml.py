"""CoreML export (ML Program ``.mlpackage``, fp32 / fp16 / int8) and its runner for the parity check.

What
    :func:`export_coreml` converts a student to an ML Program package with one named float32 input
    (``meta["input"]["name"]``, e.g. ``image``: RGB in [0, 1], NCHW, batch 1) and one named float32
    output (``pose``), and embeds the meta dict. :func:`run_coreml` runs a package on a batch of
    inputs; :func:`read_metadata` returns the embedded meta.

Why these choices
    * Route: ``torch.export.export(...).run_decompositions({})`` -> ``coremltools.convert``. It is the
      one route that takes both model kinds the pipeline ships: the float student and the
      PT2E-converted int8 student (``pipeline.quant.convert``), whose ``quantized_decomposed``
      quantize/dequantize nodes coremltools 9 maps to MIL ``quantize``/``dequantize`` and
      ``constexpr_affine_dequantize`` ops. ``torch.jit.trace`` converts the float student too, but on
      the int8 graph coremltools 9 fails ("Could not find quantization parameters for quantized var
      _frozen_param0"); TorchScript is also deprecated in torch 2.x. Without ``run_decompositions``
      coremltools refuses the graph ("Provided Dialect: TRAINING").
    * Input type: a float32 ``TensorType``, not an ``ImageType``. Every artifact of the pipeline has the
      same contract (RGB floats in [0, 1]; the model normalizes internally), recorded in the meta and
      in the input description. An ImageType would move the /255 scaling into Core ML's pixel-buffer
      path, which differs per platform and cannot be reproduced off macOS, so the parity check would
      no longer cover it. Apps convert a CVPixelBuffer with ``MLMultiArray`` or vImage (pixel / 255).
    * Precision: fp32 = ``compute_precision`` FLOAT32; fp16 = FLOAT16 (weights and activations fp16,
      float32 I/O); int8 from a float model = FLOAT16 compute with every conv/linear weight stored
      int8, per output channel, symmetric (``coremltools.optimize.coreml.linear_quantize_weights``;
      the form the Neural Engine runs, fp32 programs do not run there); int8 from a PT2E-converted
      model = the model's own int8 weights and int8 activation quantize/dequantize pairs (W8A8), also
      with FLOAT16 compute between them, for the same reason. ``int8_compute="fp32"`` keeps float32
      between the pairs instead: the package then computes exactly what the torch int8 reference
      computes (measured max difference 0.0 deg on the test student, 0.43 deg on a briefly trained
      ``mobile_s``, against 0.78 and 1.3 deg with float16), but runs only on CPU/GPU.
    * Deployment target iOS16 (macOS 13), the first with ``constexpr_affine_dequantize``; iOS17 for
      W8A8 programs, which need ``quantize``/``dequantize``.

How the check runs
    On macOS ``MLModel.predict`` (CPU only) runs the package. Elsewhere coremltools cannot load a
    model, so the package's spec is checked against the embedded meta (input/output names, shapes,
    dtypes) and the ML Program read back from the package (weights from ``weight.bin``) is evaluated
    by :mod:`exporters.mil_eval`, a numpy evaluator of its MIL ops with float16 casts honoured. That
    is the project's own oracle, not Apple's runtime, and reports say so: ``verified (MIL emulation)``
    on Linux against ``verified (Core ML runtime)`` on macOS (:data:`HOW_EVALUATOR`, :data:`HOW_PREDICT`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.runs import atomic_path

log = logging.getLogger(__name__)

META_KEY = "model_meta"  # user_defined_metadata key holding the full meta as JSON
PRECISIONS = ("fp32", "fp16", "int8")
READABLE_KEYS = ("name", "version", "config_hash", "format", "precision", "task")
# What verified an artifact; the part before " (" is the label reports show: "verified (MIL emulation)"
# means the project's numpy evaluator of the package's ML Program agreed with torch, not Apple's runtime.
RUNTIME_LABEL = "Core ML runtime"
EMULATION_LABEL = "MIL emulation"
HOW_PREDICT = f"{RUNTIME_LABEL} (MLModel.predict, CPU)"
HOW_EVALUATOR = f"{EMULATION_LABEL} (numpy evaluator of the package's ML Program, not the Core ML runtime; spec checked)"
# linear_quantize_weights skips weights below 2048 elements by default; 0 quantizes every conv/linear
# weight (small depthwise kernels included), so an "int8" package holds no float weights.
INT8_WEIGHT_THRESHOLD = 0


# coremltools 9 draws a tqdm progress bar per conversion phase (seven per int8 package) with no option
# to turn them off; these are the module-level names it draws them with.
PROGRESS_BARS = (("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
                 ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
                 ("coremltools.optimize.coreml._post_training_quantization", "tqdm"),
                 ("coremltools.optimize.coreml._quantization_passes", "tqdm"))


@contextlib.contextmanager
def _converter_progress() -> Iterator[None]:
    """coremltools' progress bars only when this module logs at DEBUG (``--verbose``); hidden otherwise."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    saved = []
    for module_name, attr in PROGRESS_BARS:
        module = importlib.import_module(module_name)
        bar = getattr(module, attr, None)
        if bar is None:  # another coremltools layout: its bars show, nothing breaks
            log.debug("no %s.%s to silence", module_name, attr)
            continue
        saved.append((module, attr, bar))
        setattr(module, attr, functools.partial(bar, disable=True))
    try:
        yield
    finally:
        for module, attr, bar in saved:
            setattr(module, attr, bar)


def _ct() -> Any:
    import coremltools as ct

    return ct


def _can_predict() -> bool:
    """True where Core ML itself can run a model (macOS with coremltools' native extension)."""
    if sys.platform != "darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


def _is_pt2e(model: nn.Module) -> bool:
    from exporters.qdq import is_quantized

    return is_quantized(model)


def _exported_program(model: nn.Module, sample: torch.Tensor) -> torch.export.ExportedProgram:
    from exporters.qdq import eval_copy

    with torch.no_grad():
        program = torch.export.export(eval_copy(model), (sample,))
    return program.run_decompositions({})


def _convert(model: nn.Module, sample: torch.Tensor, precision: str, meta: dict, target: Any,
             int8_compute: str) -> Any:
    """The converted MLModel (not yet saved), quantized per ``precision``."""
    ct = _ct()
    pt2e = precision == "int8" and _is_pt2e(model)
    compute_name = int8_compute if precision == "int8" else precision
    compute = ct.precision.FLOAT32 if compute_name == "fp32" else ct.precision.FLOAT16
    target = target or (ct.target.iOS17 if pt2e else ct.target.iOS16)
    in_name, out_name = meta["input"]["name"], meta["outputs"][0]["name"]
    program = _exported_program(model, sample)
    with _converter_progress():
        mlmodel = ct.convert(
            program, convert_to="mlprogram",
            inputs=[ct.TensorType(name=in_name, shape=tuple(sample.shape), dtype=np.float32)],
            outputs=[ct.TensorType(name=out_name, dtype=np.float32)],
            compute_precision=compute, minimum_deployment_target=target, skip_model_load=not _can_predict())
        if precision == "int8" and not pt2e:
            import coremltools.optimize.coreml as cto

            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel",
                weight_threshold=INT8_WEIGHT_THRESHOLD))
            mlmodel = cto.linear_quantize_weights(mlmodel, config)
    compute_text = "float32" if compute_name == "fp32" else "float16"
    how = {"fp32": "float32 compute", "fp16": "float16 compute, float16 weights",
           "int8": (f"int8 weights and activations from the PT2E model (W8A8), {compute_text} compute between them"
                    if pt2e else f"int8 weights per output channel (symmetric), {compute_text} compute")}[precision]
    log.info("converted to an ML Program: %s, deployment target %s", how, target.name)
    mlmodel.user_defined_metadata["precision_detail"] = how
    return mlmodel


def _describe(mlmodel: Any, meta: dict) -> None:
    """Write ``meta`` into the model's description fields and ``user_defined_metadata``."""
    inp, out = meta["input"], meta["outputs"][0]
    mlmodel.author = str(meta.get("author", ""))
    mlmodel.license = str(meta.get("license", ""))
    mlmodel.short_description = str(meta.get("description", ""))
    mlmodel.version = str(meta.get("version", ""))
    if inp.get("color"):
        what = (f"{inp['color']} image, {inp['layout']} {inp['shape']} {inp['dtype']} in "
                f"[{inp['range'][0]:g}, {inp['range'][1]:g}] (pixel / 255); mean {inp['mean']}, std {inp['std']} "
                "describe this input (normalization happens inside the model)")
    else:
        what = f"features, {inp['layout']} {inp['shape']} {inp['dtype']}; mean {inp['mean']}, std {inp['std']}"
    mlmodel.input_description[inp["name"]] = what
    mlmodel.output_description[out["name"]] = (f"{', '.join(out['names'])} in {out['units']} (in this order), "
                                                f"{out['dtype']} {out['shape']}")
    flat = {META_KEY: json.dumps(meta, sort_keys=True)}
    flat.update({k: str(meta[k]) for k in READABLE_KEYS if k in meta})
    flat.update(input_layout=str(inp["layout"]), output_names=",".join(out["names"]), units=str(out["units"]))
    for key, value in flat.items():
        mlmodel.user_defined_metadata[key] = value


def _save(mlmodel: Any, out_path: Path) -> None:
    """Save the package beside ``out_path`` and move it into place (no half-written package)."""
    with atomic_path(out_path) as tmp:
        mlmodel.save(str(tmp))


def export_coreml(model: nn.Module, sample: torch.Tensor, out_path: Path, precision: str, meta: dict,
                  *, target: Any = None, int8_compute: str = "fp16") -> Path:
    """Write ``out_path`` (a ``.mlpackage``) from ``model`` at ``precision`` with ``meta`` embedded.

    ``model`` is the float student, or for ``int8`` also a PT2E-converted int8 model; ``sample`` is an
    NCHW (or NC) float batch, of which the first item fixes the input shape. ``target`` overrides the
    minimum deployment target (a ``coremltools.target`` member); ``int8_compute`` ("fp16" or "fp32") is
    the arithmetic of int8 packages between their dequantized weights / activations.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if int8_compute not in ("fp16", "fp32"):
        raise ValueError(f"int8_compute {int8_compute!r} is not 'fp16' or 'fp32'")
    out_path = Path(out_path)
    if out_path.suffix != ".mlpackage":
        raise ValueError(f"{out_path}: an ML Program is saved as a .mlpackage folder")
    sample = sample[:1].detach().float().cpu()
    if list(sample.shape) != list(meta["input"]["shape"]):
        raise ValueError(f"sample shape {list(sample.shape)} != meta input shape {meta['input']['shape']} "
                         f"(CoreML inputs are {meta['input']['layout']})")
    mlmodel = _convert(model, sample, precision, meta, target, int8_compute)
    _describe(mlmodel, meta)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _save(mlmodel, out_path)
    problems = spec_problems(_ct().utils.load_spec(str(out_path)), meta)
    if problems:
        raise RuntimeError(f"{out_path.name} does not match its meta: {'; '.join(problems)}")
    log.info("wrote %s (%s, input %s %s)", out_path, precision, meta["input"]["name"], meta["input"]["shape"])
    return out_path


# --------------------------------------------------------------------------------------------
# Reading back and running
# --------------------------------------------------------------------------------------------

def read_metadata(path: Path) -> dict | None:
    """The meta embedded in the package's ``user_defined_metadata`` (None if absent)."""
    spec = _ct().utils.load_spec(str(path))
    props = dict(spec.description.metadata.userDefined)
    return json.loads(props[META_KEY]) if META_KEY in props else None


def _array_type(feature: Any) -> tuple[list[int], str]:
    ft = _ct().proto.FeatureTypes_pb2.ArrayFeatureType
    names = {ft.FLOAT32: "float32", ft.FLOAT16: "float16", ft.DOUBLE: "float64", ft.INT32: "int32",
             ft.INT8: "int8"}
    if feature.type.WhichOneof("Type") != "multiArrayType":
        return [], feature.type.WhichOneof("Type") or "none"
    arr = feature.type.multiArrayType
    return [int(d) for d in arr.shape], names.get(arr.dataType, str(arr.dataType))


def spec_problems(spec: Any, meta: dict | None) -> list[str]:
    """Where the package's interface differs from ``meta`` (names, shapes, dtypes); [] if it agrees."""
    problems: list[str] = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type {spec.WhichOneof('Type')!r}, expected an ML Program")
    ins, outs = list(spec.description.input), list(spec.description.output)
    if len(ins) != 1 or len(outs) != 1:
        return problems + [f"{len(ins)} inputs / {len(outs)} outputs, expected 1 / 1"]
    if meta is None:
        return problems
    want_in, want_out = meta["input"], meta["outputs"][0]
    shape, dtype = _array_type(ins[0])
    if ins[0].name != want_in["name"]:
        problems.append(f"input name {ins[0].name!r} != {want_in['name']!r}")
    if shape != list(want_in["shape"]) or dtype != want_in["dtype"]:
        problems.append(f"input {dtype} {shape} != meta {want_in['dtype']} {want_in['shape']}")
    shape, dtype = _array_type(outs[0])
    if outs[0].name != want_out["name"]:
        problems.append(f"output name {outs[0].name!r} != {want_out['name']!r}")
    if dtype != want_out["dtype"] or (shape and shape != list(want_out["shape"])):
        problems.append(f"output {dtype} {shape} != meta {want_out['dtype']} {want_out['shape']}")
    return problems


def run_coreml(path: Path, inputs: np.ndarray) -> tuple[np.ndarray, str]:
    """Outputs of the package on ``inputs`` (N items laid out as the meta says), and how they were made."""
    ct = _ct()
    path = Path(path)
    spec = ct.utils.load_spec(str(path))
    meta = read_metadata(path)
    problems = spec_problems(spec, meta)
    if problems:
        raise ValueError(f"{path.name}: spec does not match the embedded meta: {'; '.join(problems)}")
    in_name, out_name = spec.description.input[0].name, spec.description.output[0].name
    in_shape, _ = _array_type(spec.description.input[0])
    inputs = np.asarray(inputs)
    if inputs.dtype != np.float32 or list(inputs.shape[1:]) != in_shape[1:]:
        raise TypeError(f"{path.name} takes float32 {in_shape}, got {inputs.dtype} {list(inputs.shape)}")
    items = [np.ascontiguousarray(inputs[i:i + 1]) for i in range(inputs.shape[0])]  # the program has batch 1
    if _can_predict():
        model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        outs = [np.asarray(model.predict({in_name: x})[out_name], np.float32) for x in items]
        return np.concatenate(outs), HOW_PREDICT
    from exporters.mil_eval import evaluate, load_program

    prog = load_program(path)
    func = prog.functions["main"]
    if list(func.inputs) != [in_name] or [v.name for v in func.outputs] != [out_name]:
        raise ValueError(f"{path.name}: program I/O {list(func.inputs)} -> {[v.name for v in func.outputs]} "
                         f"!= spec {in_name} -> {out_name}")
    outs = [np.asarray(evaluate(prog, {in_name: x})[out_name], np.float32) for x in items]
    return np.concatenate(outs), HOW_EVALUATOR
