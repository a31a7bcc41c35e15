"""Tests for pipeline.quant: PT2E QAT/PTQ -> convert -> int8 TFLite / ONNX QDQ, on tiny models.

The models here mirror the student contract (RGB [0,1] NCHW in, affine normalization buffers,
conv+BN+ReLU/ReLU6 and depthwise-separable blocks, global average pool, linear head, output
``y * scale + offset`` in degrees) at small widths so the whole file runs in well under a minute
on one CPU thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import quant
from pipeline.quant.graph import _attr

torch.set_num_threads(1)


class _Affine(nn.Module):
    def __init__(self, mean: list[float], std: list[float], image: bool):
        super().__init__()
        shape = (1, len(mean), 1, 1) if image else (1, len(mean))
        self.register_buffer("mean", torch.tensor(mean).view(shape))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


class _Scale(nn.Module):
    def __init__(self, scale: list[float], offset: list[float]):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale).view(1, -1))
        self.register_buffer("offset", torch.tensor(offset).view(1, -1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.offset


def _cbr(cin: int, cout: int, stride: int = 1, groups: int = 1, k: int = 3,
         act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


class TinyStudent(nn.Module):
    """Stem conv, two depthwise-separable blocks, global pool, linear head -> (N, 3) degrees."""

    def __init__(self, width: int = 8, pool: str = "mean"):
        super().__init__()
        self.norm = _Affine([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], image=True)
        w = width
        self.features = nn.Sequential(
            _cbr(3, w, 2, act=nn.ReLU6),
            _cbr(w, w, 1, groups=w), _cbr(w, 2 * w, k=1, act=nn.ReLU6),
            _cbr(2 * w, 2 * w, 2, groups=2 * w), _cbr(2 * w, 2 * w, k=1))
        self.pool = pool
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * w, 3)
        nn.init.normal_(self.head.weight, std=1.0)  # as after training: outputs spread over degrees
        self.out = _Scale([60.0, 45.0, 30.0], [0.0, 2.0, -1.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(self.norm(x))
        z = z.mean(dim=(2, 3)) if self.pool == "mean" else torch.flatten(self.gap(z), 1)
        return self.out(self.head(z))


class TinyMLP(nn.Module):
    """1-D toy regressor: normalization, Linear+ReLU layers, output scaling."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.norm = _Affine([0.0], [2.0], image=False)
        self.net = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 1))
        self.out = _Scale([2.0], [0.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(self.norm(x)))


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # per-image colour and a coarse random pattern, so outputs vary clearly across the batch
    coarse = torch.rand(n, 3, 4, 4, generator=g).repeat_interleave(16, 2).repeat_interleave(16, 3)
    noise = torch.rand(n, 3, 64, 64, generator=g)
    return (0.6 * coarse + 0.2 * noise) * torch.rand(n, 3, 1, 1, generator=g) + 0.1 * torch.rand(n, 1, 1, 1, generator=g)


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 6 - 3
    return x, torch.sin(x) + 0.3 * x


def _warm_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BN running stats realistic values (as after float training)."""
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(_images(8, seed + i))
    return model.eval()


def _output_step(converted: torch.fx.GraphModule) -> float:
    """Quantization step of the last quantized activation (one output LSB, in output units)."""
    step = None
    for node in converted.graph.nodes:
        if node.op == "call_function" and "quantize_per_tensor" in str(node.target) \
                and "dequantize" not in str(node.target):
            step = float(node.args[1])
    assert step is not None
    return step


def _bn_buffers(prepared: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in prepared.named_buffers() if k.endswith("running_mean")}


def _fq_scales(prepared: torch.fx.GraphModule) -> list[torch.Tensor]:
    return [m.scale.clone() for m in quant.observers(prepared)]


@pytest.fixture(scope="module")
def cnn_qat():
    """One QAT run of the student shared by the tests (prepare and convert are the slow parts).

    Calibrate, one step with everything live, freeze BN stats and observers, a train/eval round
    trip, one more step, evaluate the fake-quant model, convert. Buffers are recorded on the way.
    """
    torch.manual_seed(0)
    model = _warm_bn(TinyStudent(width=8, pool="mean"))
    float_before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = quant.prepare_qat(model, _images(4, 100))
    quant.calibrate(prepared, [_images(8, 200 + i) for i in range(2)])
    quant.set_train_mode(prepared, True)
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-4)
    grads_finite = []

    def step(seed: int) -> None:
        x = _images(8, seed) * 2  # a shifted distribution, so BN stats and ranges would move
        loss = (prepared(x) - 10.0 * x.mean(dim=(1, 2, 3), keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        grads_finite.append(all(bool(torch.isfinite(p.grad).all())
                                for p in prepared.parameters() if p.grad is not None))
        opt.step()

    rec = dict(bn0=_bn_buffers(prepared), sc0=_fq_scales(prepared))
    step(300)
    rec.update(bn1=_bn_buffers(prepared), sc1=_fq_scales(prepared))
    quant.freeze_bn_stats(prepared)
    quant.freeze_observers(prepared)
    quant.set_train_mode(prepared, False)
    quant.set_train_mode(prepared, True)  # the BN freeze must survive a train/eval round trip
    step(301)
    rec.update(bn2=_bn_buffers(prepared), sc2=_fq_scales(prepared))
    quant.set_train_mode(prepared, False)
    x = _images(6, 400)
    with torch.no_grad():
        fake_quant = prepared(x)
        floating = model(x)
    converted = quant.convert(prepared)
    return dict(model=model, float_before=float_before, prepared=prepared, converted=converted, x=x,
                fake_quant=fake_quant, floating=floating, grads_finite=grads_finite, **rec)


def test_converted_holds_int8_weights_and_qdq_without_batchnorm(cnn_qat):
    converted = cnn_qat["converted"]
    s = quant.quant_summary(converted)
    assert s["weighted_ops"] == 6  # 5 convs + head
    assert s["weighted_ops_int8"] == s["weighted_ops"]
    assert s["per_channel_dequantize_nodes"] == 6
    assert s["int8_tensors"] >= 6
    assert s["quantize_nodes"] >= 6 and s["dequantize_nodes"] >= s["quantize_nodes"]
    assert not s["has_batchnorm"] and s["batchnorm_nodes"] == 0
    assert s["observer_modules"] == 0
    # The int8 weights are real int8 tensors in the symmetric range, per output channel.
    for node in converted.graph.nodes:
        if node.op == "call_function" and "dequantize_per_channel" in str(node.target):
            w = _attr(converted, node.args[0].target)
            scales = _attr(converted, node.args[1].target)
            assert w.dtype == torch.int8
            assert int(w.min()) >= -127 and int(w.max()) <= 127
            assert scales.numel() == w.shape[0] and bool((scales > 0).all())


def test_converted_matches_fake_quant(cnn_qat):
    converted, x, fq = cnn_qat["converted"], cnn_qat["x"], cnn_qat["fake_quant"]
    with torch.no_grad():
        y = converted(x)
    step = _output_step(converted)
    diff = (y - fq).abs()
    # BN folding reorders float math, which can flip a rounding: allow 2 output LSBs at most.
    assert float(diff.max()) <= 2 * step + 1e-6, (float(diff.max()), step)
    assert float(diff.mean()) <= 0.25 * step
    # The comparison means something only if the outputs vary across inputs.
    assert float(y.std(dim=0).min()) > 2 * step


def test_prepared_stays_usable_after_convert(cnn_qat):
    prepared, x = cnn_qat["prepared"], cnn_qat["x"]
    with torch.no_grad():
        assert torch.equal(prepared(x), cnn_qat["fake_quant"])


def test_dynamic_batch(cnn_qat):
    converted, x = cnn_qat["converted"], cnn_qat["x"]
    with torch.no_grad():
        y1 = converted(x[:1])
        y5 = converted(x[:5])
    assert y1.shape == (1, 3) and y5.shape == (5, 3)
    assert torch.allclose(y1[0], y5[0], atol=_output_step(converted) + 1e-6)


def test_unfold_quantized_weights_is_exact(cnn_qat):
    converted, x = cnn_qat["converted"], cnn_qat["x"]
    unfolded = quant.unfold_quantized_weights(converted)
    s0, s1 = quant.quant_summary(converted), quant.quant_summary(unfolded)
    assert s1["int8_tensors"] == 0
    assert s1["quantize_nodes"] == s0["quantize_nodes"] + s0["int8_tensors"]
    assert s1["dequantize_nodes"] == s0["dequantize_nodes"]
    with torch.no_grad():
        assert torch.equal(unfolded(x), converted(x))


def test_freeze_schedule(cnn_qat):
    r = cnn_qat
    assert r["bn0"] and len(r["sc0"]) > 10
    assert all(r["grads_finite"])
    # live: a training step moves BN running stats and fake-quant ranges
    assert any(not torch.equal(r["bn0"][k], r["bn1"][k]) for k in r["bn0"])
    assert any(not torch.equal(a, b) for a, b in zip(r["sc0"], r["sc1"], strict=True))
    # frozen: the next training step moves neither
    assert all(torch.equal(r["bn1"][k], r["bn2"][k]) for k in r["bn1"])
    assert all(torch.equal(a, b) for a, b in zip(r["sc1"], r["sc2"], strict=True))


def test_source_model_untouched(cnn_qat):
    after = cnn_qat["model"].state_dict()
    assert all(torch.equal(v, after[k]) for k, v in cnn_qat["float_before"].items())


def test_qat_steps_reduce_toy_loss_with_finite_gradients():
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(150):  # float pre-training, as QAT starts from a trained model
        x, y = _toy(64, i)
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    x_eval, y_eval = _toy(256, 9999)
    prepared = quant.prepare_qat(model, x_eval[:4])
    quant.calibrate(prepared, [_toy(64, 5000 + i)[0] for i in range(2)])

    def eval_loss() -> float:
        quant.set_train_mode(prepared, False)
        with torch.no_grad():
            return float((prepared(x_eval) - y_eval).pow(2).mean())

    before = eval_loss()
    quant.set_train_mode(prepared, True)
    opt = torch.optim.Adam(prepared.parameters(), lr=2e-3)
    for i in range(40):
        if i == 30:
            quant.freeze_observers(prepared)
        x, y = _toy(64, 6000 + i)
        loss = (prepared(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in prepared.parameters() if p.grad is not None]
        assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
        opt.step()
    after = eval_loss()
    assert math.isfinite(after) and after < before, (before, after)

    converted = quant.convert(prepared)
    s = quant.quant_summary(converted)
    assert s["weighted_ops_int8"] == s["weighted_ops"] == 3
    with torch.no_grad():
        diff = (converted(x_eval) - prepared(x_eval)).abs()
    assert float(diff.max()) <= 2 * _output_step(converted) + 1e-6


def test_ptq_calibration_changes_observer_ranges():
    torch.manual_seed(2)
    model = _warm_bn(TinyStudent(width=8, pool="avgpool"))
    prepared = quant.prepare_ptq(model, _images(4, 20))
    # BN is folded into the convs at prepare time for PTQ.
    assert not any("batch_norm" in str(n.target) for n in prepared.graph.nodes)
    obs = [m for m in quant.observers(prepared) if hasattr(m, "min_val") and m.min_val.dim() == 0]
    assert obs
    assert all(not math.isfinite(float(m.max_val)) or float(m.max_val) == float(m.min_val) for m in obs)
    assert quant.calibrate(prepared, [_images(8, 21 + i) for i in range(3)]) == 3
    assert all(math.isfinite(float(m.min_val)) and float(m.max_val) > float(m.min_val) for m in obs)

    converted = quant.convert(prepared)
    s = quant.quant_summary(converted)
    assert s["weighted_ops_int8"] == s["weighted_ops"] == 6 and not s["has_batchnorm"]
    x = _images(6, 30)
    with torch.no_grad():
        y, ref = converted(x), model(x)
    # PTQ on a random-weight net: the error is bounded by a few percent of the output range.
    assert float((y - ref).abs().max()) < 0.1 * float(ref.abs().max()) + 5 * _output_step(converted)


@pytest.fixture(scope="module")
def shipped_int8(tmp_path_factory):
    """The real student (model table), PTQ-converted and exported by the shipped int8 route."""
    from exporters.export import export_all
    from exporters.formats import ExportOptions
    from exporters.metadata import base_meta
    from tests.conftest import make_tiny_student, tiny_images

    model = make_tiny_student("mobile_xs", width_mult=0.5)
    prepared = quant.prepare_ptq(model, tiny_images(2, 1))
    quant.calibrate(prepared, [tiny_images(32, 300 + i) for i in range(3)])
    converted = quant.convert(prepared)
    out = tmp_path_factory.mktemp("int8")
    meta = base_meta(name="tiny", version="0", description="tiny student", author="tests", license="Apache-2.0",
                     config_hash="0")
    report = export_all(model, converted, tiny_images(8, 7), out, ["onnx_int8", "tflite_int8"], meta,
                        ExportOptions())
    return report, out


def test_int8_artifacts_verified_against_converted_model(shipped_int8):
    report, _ = shipped_int8
    assert {n: r["status"] for n, r in report["artifacts"].items()} == {"onnx_int8": "verified",
                                                                          "tflite_int8": "verified"}


def _ort_optimized_ops(path) -> list[str]:
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(path) + ".opt.onnx"
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]


def test_int8_onnx_has_no_float_activation_islands(shipped_int8):
    """After onnxruntime's QDQ fusion every conv is a QLinearConv and the graph leaves int8 only at the
    end: one QuantizeLinear (the float input), one DequantizeLinear (the output), no float Clip."""
    _, out = shipped_int8
    ops = _ort_optimized_ops(out / "onnx_int8" / "onnx_int8.onnx")
    assert "Conv" not in ops and ops.count("QLinearConv") == 11, ops
    assert "Clip" not in ops and "Relu" not in ops, ops
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1, ops
    assert "QLinearAveragePool" in ops and "ReduceMean" not in ops, ops


def _tflite_ops(path) -> list[tuple[str, list[str]]]:
    """(op name, input dtypes) in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    tensors = {d["index"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}
    return [(op["op_name"], [tensors.get(i, "none") for i in op["inputs"] if i >= 0])
            for op in it._get_ops_details()]


def test_int8_tflite_has_no_float_activation_islands(shipped_int8):
    """One float->int8 QUANTIZE after the float normalization, then int8 kernels only (activations fused
    into the convs, pooling in NHWC without a TRANSPOSE back to NCHW, no DEQUANTIZE in between)."""
    _, out = shipped_int8
    ops = [(n, d) for n, d in _tflite_ops(out / "tflite_int8" / "tflite_int8.tflite") if n != "DELEGATE"]
    names = [n for n, _ in ops]
    entry = [i for i, (n, d) in enumerate(ops) if n == "QUANTIZE" and d[0] == "float32"]
    assert len(entry) == 1, names
    body = ops[entry[0] + 1:]
    assert "TRANSPOSE" not in names and "MEAN" not in names and "DEQUANTIZE" not in names[:-1], names
    weighted = [(n, d) for n, d in body if n in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(weighted) == 13, names
    assert all(d[0] == "int8" and d[1] == "int8" for _, d in weighted), weighted
    assert not [n for n, d in body if d and d[0] == "float32"], names


def test_image_input_gets_the_pixel_quantization():
    """Image students take raw [0, 1] pixels; the converted graph quantizes them once, as pixel - 128."""
    from tests.conftest import make_tiny_student, tiny_images

    model = make_tiny_student("mobile_xs", width_mult=0.5)
    prepared = quant.prepare_qat(model, tiny_images(2, 1))
    quant.calibrate(prepared, [tiny_images(16, 2)])
    converted = quant.convert(prepared)
    x = next(n for n in converted.graph.nodes if n.op == "placeholder")
    users = [u for u in x.users if u.op == "call_function"]
    assert len(users) == 1 and "quantize_per_tensor" in str(users[0].target)
    assert users[0].args[1] == pytest.approx(1 / 255) and users[0].args[2] == -128


def test_patches_fail_loudly_on_another_library_version(monkeypatch):
    from pipeline.quant import patches

    patches.check_versions()  # the installed, pinned versions
    monkeypatch.setitem(patches.TARGETS, "torchao", "0.0.1")
    with pytest.raises(RuntimeError, match="torchao .* re-check each patch"):
        patches.check_versions()


def test_training_loop_imports_without_torchao():
    import subprocess
    import sys

    code = "import sys, pipeline.train; assert 'torchao' not in sys.modules, 'torchao imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_int8_io_tflite_takes_pixels_minus_128(tmp_path):
    """int8 I/O on the real student: the input tensor is int8 with the pixel quantization, verified."""
    from exporters.export import export_all
    from exporters.formats import ExportOptions
    from exporters.metadata import base_meta
    from pipeline.quant.pixels import PIXEL_SCALE, PIXEL_ZERO_POINT
    from tests.conftest import make_tiny_student, tiny_images

    model = make_tiny_student("mobile_xs", width_mult=0.5)
    prepared = quant.prepare_ptq(model, tiny_images(2, 1))
    quant.calibrate(prepared, [tiny_images(16, 2)])
    meta = base_meta(name="tiny", version="0", description="tiny", author="tests", license="Apache-2.0",
                     config_hash="0")
    report = export_all(model, quant.convert(prepared), tiny_images(8, 3), tmp_path, ["tflite_int8"], meta,
                        ExportOptions(int8_io=True))
    rec = report["artifacts"]["tflite_int8"]
    assert rec["status"] == "verified", rec
    inp = [n for n, d in _tflite_ops(tmp_path / rec["path"])][:1]
    assert inp and inp[0] != "QUANTIZE"  # no float->int8 step: the app feeds pixel - 128
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(tmp_path / rec["path"])).get_input_details()[0]
    assert detail["dtype"] == np.int8 and detail["quantization"] == (pytest.approx(PIXEL_SCALE), PIXEL_ZERO_POINT)
