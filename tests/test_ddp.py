"""Two processes under torchrun (gloo, CPU) through the whole smoke preset: one writer, the same
final metrics as the shared one-process smoke run within a stated tolerance."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import torch

from pipeline.device import DeviceInfo, resolve_device

# Two ranks see the same samples per step, but batch norm normalizes each half batch on its own rank,
# so the float results differ slightly from one process: within 10% of the one-process error.
REL_TOL = 0.10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_are_disjoint_and_cover_each_batch():
    idx = torch.arange(10)
    shards = [DeviceInfo(torch.device("cpu"), 1, is_writer=r == 0, rank=r, world_size=3).shard(idx)
              for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    assert all(set(a.tolist()).isdisjoint(b.tolist()) for i, a in enumerate(shards) for b in shards[i + 1:])


def test_cuda_path_is_chosen_and_configured(monkeypatch):
    """The CUDA branch, with the device mocked: bf16 autocast, cudnn autotune, one process per GPU."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    with mock.patch("torch.cuda.is_available", return_value=True):
        dev = resolve_device("auto", 1)
    assert dev.is_cuda and dev.channels_last and dev.is_writer
    assert torch.backends.cudnn.benchmark
    ctx = dev.autocast()
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    torch.backends.cudnn.benchmark = False
    with mock.patch("torch.cuda.mem_get_info", return_value=(10**9, 10**10)):
        small = torch.zeros(100, dtype=torch.uint8)
        moved = mock.MagicMock()
        with mock.patch.object(torch.Tensor, "to", return_value=moved) as to:
            assert dev.stage_tensor(small) is moved  # fits: copied to the GPU once
            to.assert_called_once()
        with mock.patch.object(torch.Tensor, "pin_memory", return_value="pinned"):
            with mock.patch("torch.cuda.mem_get_info", return_value=(10, 10**10)):
                assert dev.stage_tensor(small) == "pinned"  # too big: pinned host memory


def test_cpu_bf16_only_where_the_cpu_computes_bf16_natively():
    """The teacher's cpu_bf16 knob turns on autocast only with native bf16; emulated bf16 is far slower."""
    dev = DeviceInfo(torch.device("cpu"), 1)
    assert not isinstance(dev.autocast(), torch.autocast) and dev.precision() == "fp32"
    with mock.patch("pipeline.device.cpu_has_native_bf16", return_value=True):
        ctx = dev.autocast(cpu_bf16=True)
        assert isinstance(ctx, torch.autocast) and ctx.device == "cpu" and ctx.fast_dtype == torch.bfloat16
        assert dev.precision(cpu_bf16=True) == "bf16"
    with mock.patch("pipeline.device.cpu_has_native_bf16", return_value=False):
        assert not isinstance(dev.autocast(cpu_bf16=True), torch.autocast)
        assert dev.precision(cpu_bf16=True) == "fp32"
    with mock.patch("torch.ops.mkldnn._is_mkldnn_bf16_supported", side_effect=RuntimeError("gone"), create=True):
        from pipeline.device import cpu_has_native_bf16
        cpu_has_native_bf16.cache_clear()
        assert cpu_has_native_bf16() is False
    cpu_has_native_bf16.cache_clear()


def test_cpu_bf16_is_kept_only_for_networks_that_train_faster_in_it():
    from pipeline.config import load_config
    from pipeline.train import network_train_config

    cfg = load_config("face_pose.yaml", [])
    assert network_train_config(cfg.teacher.train, "cnn_m").cpu_bf16  # the dense CNN teacher
    assert not network_train_config(cfg.teacher.train, "mlp_l").cpu_bf16  # measured slower: MLPs
    assert not network_train_config(cfg.distill.train, "mobile_s").cpu_bf16  # and depthwise students
    assert not cfg.qat.train.cpu_bf16  # the fake-quantized graph stays fp32
    off = load_config("face_pose.yaml", ["teacher.train.cpu_bf16=false"])
    assert not network_train_config(off.teacher.train, "cnn_m").cpu_bf16


def test_torchrun_two_processes_smoke_matches_one_process(smoke_run, tmp_path):
    one_out, _ = smoke_run
    one = json.loads((one_out / "smoke" / "summary.json").read_text())["stages"]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "pipeline", "run", "smoke.yaml", "benchmark.enabled=false",
           # one format: what is checked here is training across processes and one writer; the shared
           # smoke run exports every format
           "export.formats=[onnx_fp32]", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("summary: ") == 1  # only rank 0 reports
    two = json.loads((out / "smoke" / "summary.json").read_text())["stages"]
    assert "2 processes" in json.loads((out / "smoke" / "summary.json").read_text())["device"]
    for stage in ("teacher", "distill", "qat"):
        a, b = one[stage]["metrics"]["test_mae"], two[stage]["metrics"]["test_mae"]
        assert abs(a - b) <= REL_TOL * a, (stage, a, b)
        epochs = [json.loads(x)["epoch"] for x in (Path(two[stage]["dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert epochs == sorted(set(epochs))  # one writer: no row twice
    assert two["export"]["status"] == "ran"
    assert not list(out.rglob(".*.*"))  # no temporary files of a second writer


def test_train_precision_benchmark_times_both_precisions_only_where_native(capsys, monkeypatch):
    from benchmarks import train_precision

    for native, expect in ((True, "bf16/fp32"), (False, "native bf16: no (fp32 only)")):
        monkeypatch.setattr(train_precision, "cpu_has_native_bf16", lambda n=native: n)
        monkeypatch.setattr("sys.argv", ["train_precision", "--archs", "mobile_xs", "--steps", "1",
                                         "--batch", "8", "--repeats", "1", "--threads", "1"])
        train_precision.main()
        out = capsys.readouterr().out
        assert expect in out and "mobile_xs" in out
        assert ("bf16 " in out.splitlines()[-1]) == native
