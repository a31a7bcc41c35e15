"""Tests for exporters.coreml and exporters.mil_eval: packages, spec, metadata, numeric parity.

A tiny head-pose student (normalization buffers, conv/BN/ReLU stem, depthwise 3x3 + pointwise 1x1
with BN and ReLU6, spatial mean, linear head, output scale/offset buffers) is exported at fp32, fp16
and int8, read back, and run: with ``MLModel.predict`` on macOS, with the numpy MIL evaluator
elsewhere. Tolerances are relative to the largest output magnitude (tens of degrees):

* fp32 ``1e-4``: float32 keeps 24 bits; different summation orders over <= 144-term dot products and
  ~8 layers stay near 1e-6 relative (measured 2e-7), so 1e-4 has wide headroom yet fails any real change.
* fp16 ``5e-3``: float16 keeps 11 bits (half-ulp 2.4e-4 relative); weights and every intermediate of
  ~10 ops are rounded, so drift of several half-ulps is expected (measured 1.4e-3 on a trained student).
* int8 ``3e-2``: per-channel symmetric int8 weights are off by up to half a step, 1/254 of each channel's
  largest weight (3.9e-3), on top of float16 compute (measured 6e-3 relative).

A package whose weights are altered inside ``weight.bin`` must fail these checks; ops the students do
not emit yet are checked on a hand-built MIL program. Runs in ~15 s on two CPU threads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ct = pytest.importorskip("coremltools")

from exporters.coreml import (  # noqa: E402
    HOW_EVALUATOR,
    HOW_PREDICT,
    META_KEY,
    export_coreml,
    read_metadata,
    run_coreml,
    spec_problems,
)
from exporters.metadata import artifact_meta, base_meta  # noqa: E402
from exporters.mil_eval import SUPPORTED_OPS, evaluate, load_program, op_counts  # noqa: E402

torch.set_num_threads(1)

REL_TOL = {"fp32": 1e-4, "fp16": 5e-3, "int8": 3e-2}
INT8_PT2E_TOL_DEG = 2.0  # W8A8 vs the torch int8 model: a few int8 output steps (~0.6 deg each here)


class TinyPose(nn.Module):
    """RGB [0, 1] NCHW (N, 3, 64, 64) -> (N, 3) degrees, the student's structure at a tiny width."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.fc = nn.Linear(32, 3)
        self.register_buffer("scale", torch.tensor([[40.0, 25.0, 20.0]]))
        self.register_buffer("offset", torch.tensor([[2.0, -3.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pw(self.dw(self.stem((x - self.mean) / self.std))).mean(dim=(2, 3))
        return self.fc(z) * self.scale + self.offset


def _model() -> TinyPose:
    """Random weights with non-trivial BN statistics, scaled so outputs spread over tens of degrees."""
    torch.manual_seed(0)
    model = TinyPose()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.2, 1.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.3)
        model.fc.weight.mul_(4.0)
    return model.eval()


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth random colour fields with per-image brightness, quantized like pixel / 255."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 6, generator=g)
    img = nn.functional.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    img = (img - 0.5) * (0.5 + torch.rand(n, 1, 1, 1, generator=g)) + 0.5
    return (img.clamp(0, 1) * 255).round() / 255


def _meta(precision: str, shape: tuple[int, ...] = (1, 3, 64, 64), names: tuple[str, ...] = ("yaw", "pitch", "roll"),
          ) -> dict:
    base = base_meta(name="tiny_pose", version="1.2.3", description="tiny head-pose test student", author="tests",
                     license="Apache-2.0", config_hash="c0ffee00", output_names=names)
    return artifact_meta(base, f"coreml_{precision}", shape, len(names))


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def setup() -> tuple[TinyPose, torch.Tensor, np.ndarray]:
    model, x = _model(), _images(8, 7)
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


def test_programs_hold_the_expected_ops(packages) -> None:
    ops = {p: op_counts(load_program(path)) for p, (path, _) in packages.items()}
    assert ops["fp32"]["conv"] == 3 and ops["fp32"]["cast"] == 0
    assert ops["fp16"]["cast"] >= 2  # float32 input -> float16 compute -> float32 output
    assert ops["int8"]["constexpr_affine_dequantize"] == 4  # three convs and the linear layer
    assert all(set(c) <= SUPPORTED_OPS for c in ops.values())


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_parity_with_torch(setup, packages, precision: str) -> None:
    _, x, ref = setup
    path, _ = packages[precision]
    got, how = run_coreml(path, x.numpy())
    assert how in (HOW_PREDICT, HOW_EVALUATOR)
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
    prepared = quant.prepare_ptq(model, _images(2, 1))
    quant.calibrate(prepared, [_images(16, 100 + i) for i in range(2)])
    int8 = quant.convert(prepared)
    with torch.no_grad():
        ref8 = int8(x).numpy()
    path = export_coreml(int8, x, tmp_path / "w8a8.mlpackage", "int8", _meta("int8"))
    ops = op_counts(load_program(path))
    assert ops["quantize"] >= 5 and ops["dequantize"] >= 5 and ops["constexpr_affine_dequantize"] >= 4
    got, _ = run_coreml(path, x.numpy())
    assert np.abs(got - ref8).max() <= INT8_PT2E_TOL_DEG
    assert np.abs(got - ref).max() < 0.2 * np.abs(ref).max()  # and still the float model, roughly


def test_ios18_blockwise_weights(setup, tmp_path: Path) -> None:
    """With an iOS18 target coremltools stores int8 weights as constexpr_blockwise_shift_scale."""
    model, x, ref = setup
    path = export_coreml(model, x, tmp_path / "ios18.mlpackage", "int8", _meta("int8"), target=ct.target.iOS18)
    assert op_counts(load_program(path))["constexpr_blockwise_shift_scale"] == 4
    got, _ = run_coreml(path, x.numpy())
    assert _rel_err(got, ref) <= REL_TOL["int8"]


def test_vector_model(tmp_path: Path) -> None:
    """The 1-D toy (input (N, 1), layout NC) exports and runs too."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1)).eval()
    x = torch.linspace(-3, 3, 11).view(-1, 1)
    meta = _meta("fp32", shape=(11, 1), names=("y",))
    assert meta["input"]["layout"] == "NC" and meta["input"]["shape"] == [1, 1]
    path = export_coreml(model, x, tmp_path / "toy.mlpackage", "fp32", meta)
    assert read_metadata(path) == meta
    got, _ = run_coreml(path, x.numpy())
    with torch.no_grad():
        assert _rel_err(got, model(x).numpy()) <= REL_TOL["fp32"]


def test_interface_checks(packages) -> None:
    path, meta = packages["fp32"]
    wrong = {**meta, "input": {**meta["input"], "name": "pixels"}}
    assert any("input name" in p for p in spec_problems(ct.utils.load_spec(str(path)), wrong))
    with pytest.raises(TypeError, match="takes float32"):
        run_coreml(path, np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="meta input shape"):
        export_coreml(_model(), torch.zeros(1, 3, 32, 32), path.with_name("x.mlpackage"), "fp32", meta)


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
