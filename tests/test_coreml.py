"""Tests for exporters.coreml and exporters.mil_eval: packages, spec, metadata, numeric parity.

The shared tiny student (``mobile_xs`` from the model table at half width: normalization buffers,
conv/BN/ReLU6 stem, five depthwise 3x3 + pointwise 1x1 blocks with BN and ReLU6, spatial mean, a
Linear-ReLU-Linear head with the label scale folded in) is exported at fp32, fp16 and int8, read back,
and run: with ``MLModel.predict`` on macOS, with the numpy MIL evaluator elsewhere (reported as
"MIL emulation", never as the Core ML runtime). Tolerances are relative to the largest output
magnitude (tens of degrees):

* fp32 ``1e-4``: float32 keeps 24 bits; different summation orders over <= 576-term dot products and
  ~13 layers stay near 1e-6 relative, so 1e-4 has wide headroom yet fails any real change.
* fp16 ``5e-3``: float16 keeps 11 bits (half-ulp 2.4e-4 relative); weights and every intermediate of
  ~25 ops are rounded, so drift of several half-ulps is expected.
* int8 ``0.1``: per-channel symmetric int8 weights are off by up to half a step, 1/254 of each channel's
  largest weight (3.9e-3), on top of float16 compute. The students take uncentred [0, 1] pixels, so the
  first conv's rounding errors also shift its output by mean(pixel) * sum(weight errors) per channel,
  which the batch norm folded after it (statistics of the float weights) does not remove: measured
  0.072 on this random student. (The shipped int8 package comes from the QAT model, whose batch-norm
  statistics are measured with the quantized weights.)

A package whose weights are altered inside ``weight.bin`` must fail these checks; ops the students do
not emit yet are checked on a hand-built MIL program.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import coremltools as ct
import numpy as np
import pytest
import torch
from torch import nn

from exporters.coreml import (
    EMULATION_LABEL,
    HOW_EVALUATOR,
    HOW_PREDICT,
    META_KEY,
    RUNTIME_LABEL,
    export_coreml,
    read_metadata,
    run_coreml,
    spec_problems,
)
from exporters.metadata import artifact_meta, base_meta
from exporters.mil_eval import SUPPORTED_OPS, evaluate, load_program, op_counts
from tests.conftest import tiny_images

torch.set_num_threads(1)

REL_TOL = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.1}
# W8A8 with float32 between the quantize/dequantize pairs vs the torch int8 model: a few int8 output
# steps (range ~46 deg / 255 = 0.18 deg each here; measured 0.21 deg).
INT8_PT2E_TOL_DEG = 1.0


def _layers(model: nn.Module) -> tuple[int, int]:
    """(conv layers, linear layers) of a torch model: what the converted program must hold."""
    return (sum(isinstance(m, nn.Conv2d) for m in model.modules()),
            sum(isinstance(m, nn.Linear) for m in model.modules()))


def _meta(precision: str, shape: tuple[int, ...] = (1, 3, 64, 64), names: tuple[str, ...] = ("yaw", "pitch", "roll"),
          ) -> dict:
    base = base_meta(name="tiny_pose", version="1.2.3", description="tiny head-pose test student", author="tests",
                     license="Apache-2.0", config_hash="c0ffee00", output_names=names)
    return artifact_meta(base, f"coreml_{precision}", shape, len(names))


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def setup(tiny_student) -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    model, x = tiny_student(), tiny_images(8, 7)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(ref).max() > 10 and ref.std(0).min() > 0.1  # outputs vary between images
    return model, x, ref


@pytest.fixture(scope="module")
def packages(setup, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    model, x, _ = setup
    out = tmp_path_factory.mktemp("coreml")
    result = {}
    for precision in ("fp32", "fp16", "int8"):
        meta = _meta(precision)
        result[precision] = (export_coreml(model, x, out / f"coreml_{precision}.mlpackage", precision, meta), meta)
    return result


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_package_spec_and_metadata(packages, precision: str) -> None:
    path, meta = packages[precision]
    assert path.is_dir() and (path / "Manifest.json").is_file()
    assert list(path.glob("Data/com.apple.CoreML/weights/weight.bin"))
    spec = ct.utils.load_spec(str(path))
    assert spec.WhichOneof("Type") == "mlProgram"
    (inp,), (out,) = spec.description.input, spec.description.output
    assert (inp.name, list(inp.type.multiArrayType.shape)) == ("image", [1, 3, 64, 64])
    assert inp.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert out.name == "pose" and out.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert spec_problems(spec, meta) == []
    assert read_metadata(path) == meta
    md = spec.description.metadata
    assert (md.author, md.license, md.shortDescription, md.versionString) == (
        "tests", "Apache-2.0", "tiny head-pose test student", "1.2.3")
    user = dict(md.userDefined)
    assert META_KEY in user and user["precision"] == precision and user["output_names"] == "yaw,pitch,roll"
    assert "[0, 1]" in inp.shortDescription and "yaw, pitch, roll in degrees" in out.shortDescription


def test_programs_hold_the_expected_ops(setup, packages) -> None:
    n_conv, n_linear = _layers(setup[0])
    ops = {p: op_counts(load_program(path)) for p, (path, _) in packages.items()}
    assert ops["fp32"]["conv"] == n_conv and ops["fp32"]["cast"] == 0
    assert ops["fp16"]["cast"] >= 2  # float32 input -> float16 compute -> float32 output
    assert ops["int8"]["constexpr_affine_dequantize"] == n_conv + n_linear  # every weight stored int8
    assert all(set(c) <= SUPPORTED_OPS for c in ops.values())


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_parity_with_torch(setup, packages, precision: str) -> None:
    _, x, ref = setup
    path, _ = packages[precision]
    got, how = run_coreml(path, x.numpy())
    assert how in (HOW_PREDICT, HOW_EVALUATOR)
    assert how.startswith(RUNTIME_LABEL if sys.platform == "darwin" else EMULATION_LABEL)
    assert got.shape == ref.shape and got.dtype == np.float32
    err = _rel_err(got, ref)
    assert err <= REL_TOL[precision], f"{precision}: relative error {err:.3g} > {REL_TOL[precision]}"
    if precision != "fp32":  # really rounded: not the float32 answer
        assert err > 1e-6


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_corrupted_weights_fail(setup, packages, precision: str, tmp_path: Path) -> None:
    """Scale one stored weight tensor inside weight.bin: the package must no longer match torch."""
    _, x, ref = setup
    path = Path(shutil.copytree(packages[precision][0], tmp_path / f"bad_{precision}.mlpackage"))
    blob = next(path.glob("Data/com.apple.CoreML/weights/weight.bin"))
    data = blob.read_bytes()
    prog = load_program(path)
    key = "quantized_data" if precision == "int8" else "weight"
    consts = [op.inputs[key].val for op in prog.functions["main"].operations
              if op.op_type in ("conv", "constexpr_affine_dequantize") and key in op.inputs
              and op.inputs[key].val is not None and op.inputs[key].val.size >= 256]
    assert consts, "no stored weight tensor found"
    old = np.asarray(consts[0])
    new = (-old).astype(old.dtype) if precision == "int8" else (old * 1.5).astype(old.dtype)
    assert data.count(old.tobytes()) == 1
    blob.write_bytes(data.replace(old.tobytes(), new.tobytes()))
    got, _ = run_coreml(path, x.numpy())
    assert _rel_err(got, ref) > 2 * REL_TOL[precision]  # measured 0.3 (fp32) and 0.1 (int8)


def test_int8_from_pt2e_model(setup, tmp_path: Path) -> None:
    """A PT2E-converted int8 model becomes a W8A8 program that follows the torch int8 model."""
    from pipeline import quant

    model, x, ref = setup
    prepared = quant.prepare_ptq(model, tiny_images(2, 1))
    quant.calibrate(prepared, [tiny_images(16, 100 + i) for i in range(2)])
    int8 = quant.convert(prepared)
    with torch.no_grad():
        ref8 = int8(x).numpy()
    n_conv, n_linear = _layers(model)
    for compute in ("fp32", "fp16"):
        path = export_coreml(int8, x, tmp_path / f"w8a8_{compute}.mlpackage", "int8", _meta("int8"),
                             int8_compute=compute)
        ops = op_counts(load_program(path))
        assert ops["quantize"] >= 5 and ops["dequantize"] >= 5
        assert ops["constexpr_affine_dequantize"] >= n_conv + n_linear  # every weight int8 (and int8 constants)
        got, _ = run_coreml(path, x.numpy())
        if compute == "fp32":  # float32 between the pairs computes what the torch int8 model computes
            assert np.abs(got - ref8).max() <= INT8_PT2E_TOL_DEG
        # float16 between the pairs flips int8 steps through 13 layers (measured 1.6-3.7 deg on this
        # student): both must still be the float model, roughly
        assert np.abs(got - ref).max() < 0.2 * np.abs(ref).max()


def test_ios18_blockwise_weights(setup, tmp_path: Path) -> None:
    """With an iOS18 target coremltools stores int8 weights as constexpr_blockwise_shift_scale."""
    model, x, ref = setup
    path = export_coreml(model, x, tmp_path / "ios18.mlpackage", "int8", _meta("int8"), target=ct.target.iOS18)
    assert op_counts(load_program(path))["constexpr_blockwise_shift_scale"] == sum(_layers(model))
    got, _ = run_coreml(path, x.numpy())
    assert _rel_err(got, ref) <= REL_TOL["int8"]


def test_vector_model(tiny_student, tmp_path: Path) -> None:
    """The 1-D student (``mlp_s``: input (N, 1), layout NC) exports and runs too."""
    model = tiny_student("mlp_s")
    x = torch.linspace(-3, 3, 11).view(-1, 1)
    meta = _meta("fp32", shape=(11, 1), names=("y",))
    assert meta["input"]["layout"] == "NC" and meta["input"]["shape"] == [1, 1]
    path = export_coreml(model, x, tmp_path / "toy.mlpackage", "fp32", meta)
    assert read_metadata(path) == meta
    got, _ = run_coreml(path, x.numpy())
    with torch.no_grad():
        assert _rel_err(got, model(x).numpy()) <= REL_TOL["fp32"]


def test_interface_checks(setup, packages) -> None:
    path, meta = packages["fp32"]
    wrong = {**meta, "input": {**meta["input"], "name": "pixels"}}
    assert any("input name" in p for p in spec_problems(ct.utils.load_spec(str(path)), wrong))
    with pytest.raises(TypeError, match="takes float32"):
        run_coreml(path, np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="meta input shape"):
        export_coreml(setup[0], torch.zeros(1, 3, 32, 32), path.with_name("x.mlpackage"), "fp32", meta)


def test_unsupported_op_is_named() -> None:
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3))])
    def prog(x):
        return mb.sin(x=mb.relu(x=x))

    with pytest.raises(NotImplementedError, match="'sin'"):
        evaluate(prog, {"x": np.zeros((1, 3), np.float32)})


def test_evaluator_ops_against_torch() -> None:
    """Ops the converted students do not emit today, checked on a hand-built MIL program."""
    from coremltools.converters.mil import Builder as mb

    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    mean, var = rng.standard_normal(6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    m = rng.standard_normal((6, 5)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 8, 8))])
    def prog(x):
        y = mb.conv(x=x, weight=w, pad_type="same", dilations=[2, 2])
        y = mb.batch_norm(x=y, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3)
        a = mb.avg_pool(x=y, kernel_sizes=[3, 3], strides=[1, 1], pad_type="same", exclude_padding_from_average=True)
        b = mb.max_pool(x=y, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid")
        b = mb.reduce_sum(x=mb.sigmoid(x=b), axes=[2, 3], keep_dims=False)  # (1, 6)
        a = mb.reshape(x=mb.transpose(x=a, perm=[0, 2, 3, 1]), shape=[1, 64, 6])
        c = mb.matmul(x=a, y=m)  # (1, 64, 5)
        c = mb.real_div(x=mb.reduce_mean(x=c, axes=[1], keep_dims=False), y=np.float32(3.0))  # (1, 5)
        d = mb.concat(values=[b, c], axis=1)  # (1, 11)
        return mb.squeeze(x=mb.expand_dims(x=d, axes=[0]), axes=[0])

    assert {"conv", "batch_norm", "avg_pool", "max_pool", "matmul", "concat", "real_div"} <= set(op_counts(prog))
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    F = nn.functional
    t = torch.from_numpy
    y = F.conv2d(t(x), t(w), padding=2, dilation=2)
    y = F.batch_norm(y, t(mean), t(var), t(gamma), t(beta), eps=1e-3)
    a = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)
    b = torch.sigmoid(F.max_pool2d(y, 2, 2)).sum((2, 3))
    c = (a.permute(0, 2, 3, 1).reshape(1, 64, 6) @ t(m)).mean(1) / 3.0
    want = torch.cat([b, c], 1).numpy()
    (got,) = evaluate(prog, {"x": x}).values()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
