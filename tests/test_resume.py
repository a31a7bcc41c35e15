"""Resume after a kill: mid-epoch and between a metrics row and its checkpoint (in process), and real
SIGKILLs of the command line at several points of every stage, each followed by the same command."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import pipeline.train as train
from pipeline.config import TrainConfig, load_config
from pipeline.device import DeviceInfo
from pipeline.orchestrate import run_pipeline
from pipeline.train import TrainData, TrainingDiverged, fit

CPU = DeviceInfo(torch.device("cpu"), 1)


def _data(n: int = 96) -> TrainData:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return TrainData(x, (x[:, :1] * 2 + 0.1 * torch.randn(n, 1, generator=g)))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))


def _step(model, batch):
    return {"loss": ((model(batch["x"]) - batch["y"]) ** 2).mean()}


def _val(model):
    model.eval()
    with torch.no_grad():
        x = torch.linspace(-2, 2, 32).view(-1, 1).repeat(1, 4)
        return {"val_mae": float((model(x) - 2 * x[:, :1]).abs().mean())}


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 16, "lr": 1e-2, "checkpoint_every_s": 1.0, **kw})


def _epochs(work: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (work / "metrics.jsonl").read_text().splitlines()]


def test_mid_epoch_kill_resumes_to_identical_weights_and_losses(tmp_path, monkeypatch):
    clean_model = _model()
    clean = fit(clean_model, _step, _data(), _val, _cfg(), CPU, tmp_path / "clean")

    # Checkpoint after every step (the clock always reads "late"), kill at step 3 of epoch 2.
    ticks = iter(range(0, 10**6, 5))
    monkeypatch.setattr(train.time, "perf_counter", lambda: float(next(ticks)))
    calls = {"n": 0}

    def dying(model, batch):
        calls["n"] += 1
        if calls["n"] == 6 + 3:  # 6 steps per epoch
            raise KeyboardInterrupt("kill")
        return _step(model, batch)

    work = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), dying, _data(), _val, _cfg(), CPU, work)
    state = torch.load(work / "checkpoint.pt", weights_only=True)["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    assert _epochs(work) == [1]
    resumed_model = _model()
    resumed = fit(resumed_model, _step, _data(), _val, _cfg(), CPU, work)
    assert _epochs(work) == [1, 2, 3, 4]
    for a, b in zip(clean_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["train_loss"] for r in clean.history] == [r["train_loss"] for r in resumed.history]
    assert clean.best_metric == resumed.best_metric


def test_kill_between_metrics_row_and_checkpoint_leaves_no_duplicate_epoch(tmp_path, monkeypatch):
    real_save = train.atomic_torch_save
    saves = {"n": 0}

    def dying_save(path, obj):  # the third epoch-end checkpoint never lands
        saves["n"] += 1
        if saves["n"] == 3:
            raise KeyboardInterrupt("kill")
        return real_save(path, obj)

    monkeypatch.setattr(train, "atomic_torch_save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), _step, _data(), _val, _cfg(checkpoint_every_s=1e9), CPU, tmp_path)
    assert _epochs(tmp_path) == [1, 2, 3]  # the row of epoch 3 was written, its checkpoint was not
    monkeypatch.setattr(train, "atomic_torch_save", real_save)
    fit(_model(), _step, _data(), _val, _cfg(checkpoint_every_s=1e9), CPU, tmp_path)
    assert _epochs(tmp_path) == [1, 2, 3, 4]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def diverging(model, batch):
        calls["n"] += 1
        out = _step(model, batch)
        if calls["n"] > 6 + 2:  # from the third step of epoch 2
            out["loss"] = out["loss"] * float("nan")
        return out

    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 2.*Lower train\.lr|lr \(now 0.01\)") as exc:
        fit(_model(), diverging, _data(), _val, _cfg(), CPU, tmp_path, desc="teacher")
    assert "teacher.train.lr" in str(exc.value) and "checkpoint.pt" in str(exc.value)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert _epochs(tmp_path) == [1]


def test_recovery_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    fit(_model(), _step, _data(), _val, _cfg(epochs=1), CPU, tmp_path)
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(train.UserError, match=r"does not match this distill model.*--force distill"):
        fit(other, _step, _data(), _val, _cfg(epochs=2), CPU, tmp_path, desc="distill[tor_mt]")
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(train.UserError, match="not a readable recovery checkpoint"):
        fit(_model(), _step, _data(), _val, _cfg(epochs=2), CPU, tmp_path)


# ------------------------------------------------------------------ real kills of the command line
KILL_RUN = [
    "data.n_train=256", "data.n_val=64", "data.n_test=64", "threads=1",
    "teacher.train.epochs=5", "teacher.train.batch_size=32", "teacher.train.checkpoint_every_s=1",
    "distill.train.epochs=3", "distill.train.batch_size=32",
    "qat.train.epochs=2", "qat.train.batch_size=32", "qat.calibration_batches=1",
    "qat.freeze_bn_epoch=0", "qat.freeze_observers_epoch=1", "export.formats=[onnx_fp32]",
    "benchmark.backends=[torch]", "benchmark.threads=[1]", "benchmark.repeats=1", "benchmark.warmup=0",
    "benchmark.min_runs=1", "benchmark.min_time_s=0", "export.teacher_formats=[onnx_fp32]",
    "benchmark.profile=false",
]
# Log lines after which the run is killed, one kill per launch, in the order they appear.
KILL_AT = [r"source: start", r"teacher epoch 2/5", r"teacher epoch 5/5", r"distill: start",
           r"distill\[\w+\] epoch 2/3", r"qat: start", r"qat epoch 1/2", r"export: start", r"benchmark: start"]
TIME_KEYS = re.compile(r"seconds|duration|per_second|latency|_ms|speed|rate")


def _launch_and_kill(out: Path, pattern: str) -> bool:
    """Run the command; SIGKILL it right after a log line matching ``pattern``. False if it finished first."""
    cmd = [sys.executable, "-m", "pipeline", "run", "sinusoid", *KILL_RUN, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    for line in proc.stderr:
        if re.search(pattern, line):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    assert proc.wait(timeout=600) == 0
    return False


def _check_consistent(root: Path) -> None:
    """Nothing incomplete is marked complete; no training log repeats an epoch."""
    for stage_dir in root.glob("*-*"):
        manifest = stage_dir / "manifest.json"
        if manifest.exists():
            m = json.loads(manifest.read_text())
            assert m["status"] == "complete"
            for name in m["artifacts"].values():
                assert (stage_dir / name).exists(), f"{stage_dir.name}: {name} listed but missing"
        metrics = stage_dir / "metrics.jsonl"
        if metrics.exists():
            epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
            assert epochs == list(range(1, len(epochs) + 1)), f"{stage_dir.name}: epochs {epochs}"


def _strip_times(obj):
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if not TIME_KEYS.search(k)}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return "nan"
    return obj


def test_sigkill_anywhere_then_same_command_ends_like_an_uninterrupted_run(tmp_path):
    out = tmp_path / "killed"
    kills = 0
    for pattern in KILL_AT:
        kills += _launch_and_kill(out, pattern)
        _check_consistent(out / "sinusoid")
    assert kills >= len(KILL_AT) - 1  # every kill landed while the run was still going (one may miss)
    assert not _launch_and_kill(out, r"^a line that never appears$")
    _check_consistent(out / "sinusoid")
    resumed = json.loads((out / "sinusoid" / "summary.json").read_text())["stages"]

    clean = run_pipeline(load_config("sinusoid", KILL_RUN), tmp_path / "clean", only={"export"}).summary["stages"]
    for stage in ("source", "data", "teacher", "distill", "qat", "export"):
        assert resumed[stage]["status"] in ("ran", "cached")
        assert _strip_times(resumed[stage]["metrics"]) == _strip_times(clean[stage]["metrics"]), stage
    assert resumed["benchmark"]["status"] in ("ran", "cached")
    for stage in ("teacher", "distill", "qat"):
        assert _epochs(Path(resumed[stage]["dir"])) == list(range(1, {"teacher": 5, "distill": 3, "qat": 2}[stage] + 1))
