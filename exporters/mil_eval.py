"""A small numpy evaluator for Core ML ML Programs (MIL), to verify ``.mlpackage`` files off macOS.

What: :func:`load_program` reads a saved ``.mlpackage`` (its ``model.mlmodel`` spec and the weights in
``weights/weight.bin``) back into a coremltools PyMIL program; :func:`evaluate` runs that program's
``main`` function on numpy inputs, one MIL operation at a time, and returns its outputs.

Why: Core ML's runtime (``MLModel.predict``) exists only on Apple platforms; coremltools on Linux has
no ``libcoremlpython`` and cannot run a model. The exported student uses a few dozen MIL operations,
all simple tensor math, so evaluating them directly gives a real numeric check of the file that ships
(weights read back from the package, constants, casts and quantization parameters included) rather
than of the torch graph it came from.

How: the program is rebuilt with coremltools' own MIL-proto reader
(``coremltools.converters.mil.frontend.milproto.load.load``), which reads the weight blobs. Only
``const`` values are taken from it; every other op, ``constexpr_*`` weight decompression included, is
computed here from its inputs. Each op computes in float32 from its (possibly float16) inputs and its
result is cast to the dtype the program declares for it, so a float16 program rounds every
intermediate tensor to float16 as a float16 device would (accumulation in float32, like the GPU and
Neural Engine); int8/uint8 ``quantize`` outputs are rounded half-to-even and saturated. Results are
checked against the shapes the program declares. Any op not in :data:`SUPPORTED_OPS`, and control
flow, raises :class:`NotImplementedError` naming it before anything runs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

log = logging.getLogger(__name__)

Handler = Callable[["_Args"], Any]


def load_program(path: Path) -> Any:
    """The PyMIL program of the ``.mlpackage`` at ``path``, with its weights read from the package."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path} is a {spec.WhichOneof('Type')!r} model, not an ML Program")
    return load_milproto(spec, spec.specificationVersion, model.weights_dir)


class _Args:
    """The evaluated inputs of one op, by name (``None`` for absent optional inputs)."""

    def __init__(self, op: Any, env: dict[str, Any]):
        self.op = op
        self._values = {}
        for name, var in op.inputs.items():
            self._values[name] = [env[v.name] for v in var] if isinstance(var, (list, tuple)) else env[var.name]

    def __call__(self, name: str, default: Any = None) -> Any:
        value = self._values.get(name)
        return default if value is None else value

    def f(self, name: str) -> np.ndarray | None:
        """Input ``name`` as a float32 working array (None if absent)."""
        value = self._values.get(name)
        return None if value is None else np.asarray(value, dtype=np.float32)

    def ints(self, name: str, default: Any = None) -> list[int] | None:
        value = self._values.get(name)
        return default if value is None else [int(v) for v in np.atleast_1d(value)]


# --------------------------------------------------------------------------------------------
# Operation kernels
# --------------------------------------------------------------------------------------------

def _spatial_padding(pad_type: str, pad: list[int] | None, in_sizes: list[int], kernel: list[int],
                     strides: list[int], dilations: list[int]) -> list[tuple[int, int]]:
    """(before, after) per spatial axis for MIL's ``pad_type`` (valid, custom, same, same_lower)."""
    if pad_type == "valid":
        return [(0, 0)] * len(in_sizes)
    if pad_type == "custom":
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(in_sizes))]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if pad_type == "same" else (big, small))
        return out
    raise NotImplementedError(f"pad_type {pad_type!r}")


def _windows(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
             padding: list[tuple[int, int]], value: float = 0.0) -> np.ndarray:
    """(N, C, OH, OW, KH, KW) view of the sliding windows of a padded NCHW tensor."""
    x = np.pad(x, ((0, 0), (0, 0), *padding), constant_values=value)
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    win = sliding_window_view(x, extent, axis=(2, 3))
    return win[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]


def _conv(a: _Args) -> np.ndarray:
    x, w, b = a.f("x"), a.f("weight"), a.f("bias")
    if x.ndim != 4:
        raise NotImplementedError(f"conv on a rank-{x.ndim} input (only 2-D convolutions are supported)")
    groups = int(a("groups", 1))
    strides, dilations = a.ints("strides", [1, 1]), a.ints("dilations", [1, 1])
    kernel = list(w.shape[2:])
    padding = _spatial_padding(str(a("pad_type", "valid")), a.ints("pad"), list(x.shape[2:]), kernel, strides,
                               dilations)
    win = _windows(x, kernel, strides, dilations, padding)
    n, c, oh, ow = win.shape[:4]
    c_out, c_in_g = w.shape[:2]
    if c != c_in_g * groups:
        raise ValueError(f"conv: input has {c} channels, weight expects {c_in_g} x {groups} groups")
    win = win.reshape(n, groups, c_in_g, oh, ow, *kernel)
    wg = w.reshape(groups, c_out // groups, c_in_g, *kernel)
    y = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True).reshape(n, c_out, oh, ow)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _pool(a: _Args, kind: str) -> np.ndarray:
    x = a.f("x")
    if x.ndim != 4:
        raise NotImplementedError(f"{kind} on a rank-{x.ndim} input (only 2-D pooling is supported)")
    if bool(a("ceil_mode", False)):
        raise NotImplementedError(f"{kind} with ceil_mode=True")
    kernel, strides = a.ints("kernel_sizes"), a.ints("strides", [1, 1])
    padding = _spatial_padding(str(a("pad_type", "valid")), a.ints("pad"), list(x.shape[2:]), kernel, strides,
                               [1, 1])
    if kind == "max_pool":
        return _windows(x, kernel, strides, [1, 1], padding, -np.inf).max(axis=(4, 5))
    total = _windows(x, kernel, strides, [1, 1], padding).sum(axis=(4, 5))
    if bool(a("exclude_padding_from_average", False)):
        count = _windows(np.ones_like(x[:1, :1]), kernel, strides, [1, 1], padding).sum(axis=(4, 5))
    else:
        count = float(np.prod(kernel))
    return total / count


def _batch_norm(a: _Args) -> np.ndarray:
    x = a.f("x")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    gamma, beta = a.f("gamma"), a.f("beta")
    gamma = np.ones(1, np.float32) if gamma is None else gamma
    beta = np.zeros(1, np.float32) if beta is None else beta
    inv = gamma.reshape(shape) / np.sqrt(a.f("variance").reshape(shape) + float(a("epsilon", 1e-5)))
    return (x - a.f("mean").reshape(shape)) * inv + beta.reshape(shape)


def _reduce(fn: Callable[..., np.ndarray]) -> Handler:
    def run(a: _Args) -> np.ndarray:
        axes = a.ints("axes")
        return fn(a.f("x"), axis=None if axes is None else tuple(axes), keepdims=bool(a("keep_dims", False)))
    return run


def _linear(a: _Args) -> np.ndarray:
    y = a.f("x") @ a.f("weight").T
    return y if a.f("bias") is None else y + a.f("bias")


def _matmul(a: _Args) -> np.ndarray:
    x, y = a.f("x"), a.f("y")
    if bool(a("transpose_x", False)):
        x = np.swapaxes(x, -1, -2)
    if bool(a("transpose_y", False)):
        y = np.swapaxes(y, -1, -2)
    return x @ y


def _along_axis(param: np.ndarray, data_ndim: int, axis: int | None) -> np.ndarray:
    """Per-axis (rank-1) quantization parameters reshaped to broadcast along ``axis``."""
    param = np.asarray(param)
    if param.ndim != 1 or axis is None:
        return param
    shape = [1] * data_ndim
    shape[axis % data_ndim] = -1
    return param.reshape(shape)


def _affine_dequantize(data: np.ndarray, zero_point: Any, scale: Any, axis: int | None) -> np.ndarray:
    zp = 0.0 if zero_point is None else _along_axis(zero_point, data.ndim, axis).astype(np.float32)
    return (data.astype(np.float32) - zp) * _along_axis(scale, data.ndim, axis).astype(np.float32)


def _constexpr_affine_dequantize(a: _Args) -> np.ndarray:
    return _affine_dequantize(a("quantized_data"), a("zero_point"), a("scale"), int(a("axis", 0)))


def _constexpr_blockwise_shift_scale(a: _Args) -> np.ndarray:
    data = np.asarray(a("data")).astype(np.float32)
    scale, offset = np.asarray(a("scale"), np.float32), a("offset")
    offset = None if offset is None else np.asarray(offset, np.float32)
    for axis, (size, blocks) in enumerate(zip(data.shape, scale.shape, strict=True)):
        if blocks != size:  # each scale entry covers size // blocks consecutive elements
            scale = np.repeat(scale, size // blocks, axis)
            offset = None if offset is None else np.repeat(offset, size // blocks, axis)
    return (data if offset is None else data - offset) * scale


def _quantize(a: _Args) -> np.ndarray:
    x = a.f("input")
    axis = a("axis")
    axis = None if axis is None else int(axis)
    q = np.rint(x / _along_axis(a("scale"), x.ndim, axis).astype(np.float32))
    if a("zero_point") is not None:
        q = q + _along_axis(a("zero_point"), x.ndim, axis).astype(np.float32)
    info = np.iinfo(_NP_DTYPES[str(a("output_dtype"))])
    return np.clip(q, info.min, info.max)


def _dequantize(a: _Args) -> np.ndarray:
    axis = a("axis")
    return _affine_dequantize(np.asarray(a("input")), a("zero_point"), a("scale"), None if axis is None else int(axis))


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Handler:
    return lambda a: fn(a.f("x"), a.f("y"))


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Handler:
    return lambda a: fn(a.f("x"))


def _squeeze(a: _Args) -> np.ndarray:
    axes = a.ints("axes")
    return np.squeeze(a("x"), axis=None if axes is None else tuple(axes))


def _concat(a: _Args) -> np.ndarray:
    if bool(a("interleave", False)):
        raise NotImplementedError("concat with interleave=True")
    return np.concatenate([np.asarray(v) for v in a("values")], axis=int(a("axis")))


_NP_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
              "uint16": np.uint16, "int32": np.int32, "bool": np.bool_}

_OPS: dict[str, Handler] = {
    # weights and casts
    "constexpr_affine_dequantize": _constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": _constexpr_blockwise_shift_scale,
    "constexpr_cast": lambda a: np.asarray(a("source")),
    "cast": lambda a: np.asarray(a("x")),  # the declared output dtype does the conversion
    "identity": lambda a: np.asarray(a("x")),
    "quantize": _quantize,
    "dequantize": _dequantize,
    # elementwise
    "add": _binary(np.add), "sub": _binary(np.subtract), "mul": _binary(np.multiply),
    "real_div": _binary(np.divide), "maximum": _binary(np.maximum), "minimum": _binary(np.minimum),
    "relu": _unary(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "clip": lambda a: np.clip(a.f("x"), float(a("alpha")), float(a("beta"))),
    "sigmoid": _unary(lambda x: 1.0 / (1.0 + np.exp(-x))),
    # layers
    "conv": _conv,
    "batch_norm": _batch_norm,
    "avg_pool": lambda a: _pool(a, "avg_pool"),
    "max_pool": lambda a: _pool(a, "max_pool"),
    "reduce_mean": _reduce(np.mean), "reduce_sum": _reduce(np.sum), "reduce_max": _reduce(np.max),
    "linear": _linear,
    "matmul": _matmul,
    # shapes
    "reshape": lambda a: np.reshape(a("x"), a.ints("shape")),
    "squeeze": _squeeze,
    "expand_dims": lambda a: np.expand_dims(a("x"), tuple(a.ints("axes"))),
    "transpose": lambda a: np.transpose(a("x"), a.ints("perm")),
    "concat": _concat,
}

SUPPORTED_OPS: frozenset[str] = frozenset({"const", *_OPS})


# --------------------------------------------------------------------------------------------
# Program walk
# --------------------------------------------------------------------------------------------

def op_counts(prog: Any, function: str = "main") -> Counter:
    """How many ops of each type the function holds (``const`` included)."""
    return Counter(op.op_type for op in prog.functions[function].operations)


def check_supported(prog: Any, function: str = "main") -> None:
    """Raise NotImplementedError naming every op of ``function`` this evaluator cannot run."""
    func = prog.functions[function]
    nested = [op.op_type for op in func.operations if getattr(op, "blocks", None)]
    unknown = sorted({op.op_type for op in func.operations} - SUPPORTED_OPS)
    if nested or unknown:
        raise NotImplementedError(
            f"MIL evaluator cannot run op(s) {sorted(set(nested) | set(unknown))} of function {function!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_OPS))}")


def _declared(var: Any) -> tuple[type, tuple | None]:
    """(numpy dtype, static shape or None) the program declares for ``var``."""
    from coremltools.converters.mil.mil import types

    dtype = types.nptype_from_builtin(var.dtype)
    shape = tuple(var.shape) if all(isinstance(d, (int, np.integer)) for d in var.shape) else None
    return dtype, shape


def _as_declared(value: Any, var: Any, where: str) -> np.ndarray:
    dtype, shape = _declared(var)
    out = np.asarray(value).astype(dtype)
    if shape is not None and out.shape != shape:
        raise RuntimeError(f"{where} has shape {out.shape}, the program declares {shape}")
    return out


def evaluate(prog: Any, inputs: dict[str, np.ndarray], function: str = "main") -> dict[str, np.ndarray]:
    """Run ``function`` of ``prog`` on ``inputs`` (name -> array); returns outputs by name."""
    check_supported(prog, function)
    func = prog.functions[function]
    env: dict[str, Any] = {}
    for name, var in func.inputs.items():
        if name not in inputs:
            raise KeyError(f"missing input {name!r}; the program takes {sorted(func.inputs)}")
        env[var.name] = _as_declared(inputs[name], var, f"input {name!r}")
    for op in func.operations:
        if op.op_type == "const":
            env[op.outputs[0].name] = op.outputs[0].val
            continue
        result = _OPS[op.op_type](_Args(op, env))
        results = result if isinstance(result, tuple) else (result,)
        for var, value in zip(op.outputs, results, strict=True):
            env[var.name] = _as_declared(value, var, f"op {op.name!r} ({op.op_type})")
    return {var.name: env[var.name] for var in func.outputs}
