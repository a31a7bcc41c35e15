"""The int8 artifacts compute the torch reference's numbers on every x86 CPU family, checked under emulation.

Why: onnxruntime's u8s8 kernels on x86 CPUs without VNNI (AVX2, AVX-512F) add two u8*s8 products in a
saturating int16 (VPMADDUBSW), which int8 weights beyond +-64 overflow; kernels with exact 32-bit sums
(VNNI, SSE4.1) do not. The export stage's parity check runs on the host's CPU only, so a VNNI CI machine
would never see the AVX2 path. Here qemu-user runs the same artifacts as a Haswell (AVX2 without VNNI)
and as a Nehalem (SSE4.1: exact sums, as on VNNI machines, which QEMU 7.2 cannot emulate), through
:mod:`exporters.emulated_parity`.

Figures: ``python -m pytest -q -rP tests/test_portable_int8.py`` prints each artifact's max / mean distance
per emulated CPU. Sensitivity, by hand: ``PORTABLE_INT8_WEIGHT_QMAX=127 python -m pytest tests/test_portable_int8.py``
rebuilds with litert's original weight range and fails (onnx_int8 on Haswell, and the CPUs disagree).

Needs qemu-user (``apt-get install qemu-user``; ``.ci/run`` installs it): without it the tests fail on CI
(``CI`` set) and skip elsewhere with the install command, like the flatc and chromium tests.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest
import torch

from exporters.emulated_parity import emulated_parity, qemu_binary
from pipeline import quant
from pipeline.quant import quantizer
from tests.conftest import make_tiny_student, tiny_images

torch.set_num_threads(1)

# Haswell: AVX2 without VNNI (the saturating path); Nehalem: SSE4.1, exact 32-bit sums.
CPUS = ("Haswell", "Nehalem")
FORMATS = ["onnx_int8", "tflite_int8"]


def _qat_int8(model: torch.nn.Module) -> torch.fx.GraphModule:
    """The qat stage's route in brief: calibrate, a few steps distilling the float model, freeze, convert.

    Training moves the weights and ranges as the real stage does (PTQ would skip FakeQuantize's weight
    spec, the one that carries ``WEIGHT_QMAX`` during training)."""
    prepared = quant.prepare_qat(model, tiny_images(2, 1))
    quant.calibrate(prepared, [tiny_images(32, 300 + i) for i in range(2)])
    quant.set_train_mode(prepared, True)
    opt = torch.optim.Adam(prepared.parameters(), lr=1e-4)
    for i in range(4):
        x = tiny_images(32, 500 + i)
        with torch.no_grad():
            target = model(x)
        loss = (prepared(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    quant.freeze_bn_stats(prepared)
    quant.freeze_observers(prepared)
    quant.set_train_mode(prepared, False)
    return quant.convert(prepared)


@pytest.fixture(scope="module")
def int8_artifacts(tmp_path_factory):
    """(float model, converted model, parity inputs, artifact paths), exported as test_quant.shipped_int8."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("qemu-x86_64 runs this environment's own Python, which is x86-64 only on x86-64 hosts")
    try:
        qemu_binary()  # before the minute of building
    except FileNotFoundError as exc:
        if os.environ.get("CI"):  # CI installs it: a missing qemu there is a broken set-up, not a skip
            pytest.fail(str(exc))
        pytest.skip(f"{exc}; CI installs it")
    from exporters.export import export_all
    from exporters.formats import ExportOptions
    from exporters.metadata import base_meta
    from exporters.parity import ParityError

    model = make_tiny_student("mobile_xs", width_mult=0.5)
    with pytest.MonkeyPatch.context() as mp:
        qmax = os.environ.get("PORTABLE_INT8_WEIGHT_QMAX")  # the sensitivity check in the docstring
        if qmax:
            mp.setattr(quantizer, "WEIGHT_QMAX", int(qmax))
        converted = _qat_int8(model)
    out = tmp_path_factory.mktemp("portable_int8")
    meta = base_meta(name="tiny", version="0", description="tiny student", author="tests", license="Apache-2.0",
                     config_hash="0")
    x = tiny_images(32, 7)
    try:
        report = export_all(model, converted, x, out, FORMATS, meta, ExportOptions())
    except ParityError:  # the native verdict depends on this host's CPU; the emulated ones below do not
        import json

        report = json.loads((out / "export_report.json").read_text())
    paths = [out / report["artifacts"][name]["path"] for name in FORMATS]
    return model, converted, x, paths


@pytest.fixture(scope="module")
def emulated(int8_artifacts):
    """cpu -> (ParityResults, format -> outputs), one qemu run per CPU shared by the tests."""
    model, converted, x, paths = int8_artifacts
    return {cpu: emulated_parity(paths, x, model, converted, cpu) for cpu in CPUS}


@pytest.mark.parametrize("cpu", CPUS)
def test_int8_parity_on_emulated_cpu(emulated, cpu):
    results, _ = emulated[cpu]
    assert [r.format for r in results] == FORMATS
    lines = [f"{r.format}: {r.status} max {r.max_abs:.3g} mean {r.mean_abs:.3g} (tol {r.tolerance:g}; {r.how})"
             for r in results]
    print("\n".join(lines))  # the figures in docs/benchmarks.md: python -m pytest -q -rP tests/test_portable_int8.py
    assert all(r.status == "passed" for r in results), "\n".join(lines)


def test_same_numbers_on_every_cpu_family(emulated):
    """Exact sums on both CPUs: the pinned runtimes then give bit-identical outputs."""
    (_, first), *others = [emulated[cpu] for cpu in CPUS]
    for cpu, (_, outputs) in zip(CPUS[1:], others, strict=True):
        for name in FORMATS:
            diff = float(np.abs(outputs[name] - first[name]).max())
            assert diff == 0.0, f"{name}: {CPUS[0]} and {cpu} differ by up to {diff:.3g} label units"
