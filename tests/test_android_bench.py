"""Android backend: benchmark_model output parsing and the adb driving, against a stand-in ``adb``.

No phone is attached in these tests: a small Python script named ``adb`` is put first on PATH; it logs
its argv, answers ``devices`` / ``getprop`` / ``push`` / ``pull`` and, for the benchmark_model shell
line, writes a fixture's text where the real command would have redirected its output.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.android import (
    REMOTE_BINARY,
    REMOTE_OUTPUT,
    AndroidTarget,
    detect_tool,
    device_info,
    run_android,
)
from benchmarks.benchmark_model_output import OpTypeStat, parse_benchmark_output

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
SERIAL = "emulator-5554"

STAND_IN_ADB = textwrap.dedent('''\
    import json, os, re, shutil, sys, time
    argv = sys.argv[1:]
    with open(os.environ["FAKE_ADB_LOG"], "a") as fh:
        fh.write(json.dumps(argv) + "\\n")
    remote = os.environ["FAKE_ADB_REMOTE"]
    args = argv[2:] if argv[:1] == ["-s"] else argv
    cmd, rest = args[0], args[1:]
    if cmd == "devices":
        print("List of devices attached")
        for entry in filter(None, os.environ.get("FAKE_ADB_DEVICES", "").split(";")):
            print(entry)
        print()
    elif cmd == "push":
        shutil.copyfile(rest[0], os.path.join(remote, os.path.basename(rest[1])))
        print(f"{rest[0]}: 1 file pushed, 0 skipped.")
    elif cmd == "pull":
        shutil.copyfile(os.path.join(remote, os.path.basename(rest[0])), rest[1])
        print(f"{rest[0]}: 1 file pulled, 0 skipped.")
    elif cmd == "shell" and rest[0] == "getprop":
        print({"ro.product.model": "Pixel 7", "ro.product.cpu.abi": "arm64-v8a"}[rest[1]])
    elif cmd == "shell" and rest[0] == "chmod":
        pass
    elif cmd == "shell" and "benchmark_model" in " ".join(rest):
        time.sleep(float(os.environ.get("FAKE_ADB_SLEEP", "0")))
        target = re.search(r"> (\\S+) 2>&1", rest[-1]).group(1)
        shutil.copyfile(os.environ["FAKE_ADB_FIXTURE"], os.path.join(remote, os.path.basename(target)))
        print("benchmark_model_exit=" + os.environ.get("FAKE_ADB_EXIT", "0"))
    else:
        print(f"adb: unknown command {argv}", file=sys.stderr)
        sys.exit(1)
''')


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ----------------------------------------------------------------------------------------- parsing


def test_classic_percentiles_and_partial_xnnpack_delegation() -> None:
    res = parse_benchmark_output(fixture("classic_xnnpack_percentiles.txt"))
    assert res.tool == "tflite"
    # the last count= line is the inference one (count=24), not the warm-up's (count=11)
    assert (res.count, res.mean_ms, res.std_ms, res.min_ms, res.max_ms) == (24, 42.3948, 0.188, 41.938, 42.84)
    assert (res.p5_ms, res.median_ms, res.p95_ms, res.p50_ms) == (42.133, 42.419, 42.671, 42.419)
    assert (res.init_ms, res.first_inference_ms, res.warmup_avg_ms) == (207.799, 90.71, 48.2302)
    assert (res.init_memory_mb, res.overall_memory_mb, res.peak_memory_mb) == (23.5938, 26.6797, 26.6797)
    [d] = res.delegations
    assert (d.delegate, d.replaced, d.total, d.partitions, d.subgraph, d.kind) == (
        "TfLiteXNNPackDelegate", 2136, 2168, 65, 0, "xnnpack")
    assert res.delegate_applied("xnnpack") == "partial: CPU fallback 32 of 2168 nodes"
    assert res.delegate_applied("gpu") == "none"
    assert res.delegate_applied("cpu") == "TfLiteXNNPackDelegate: partial: CPU fallback 32 of 2168 nodes"


def test_classic_scientific_notation_without_median() -> None:
    res = parse_benchmark_output(fixture("classic_op_profiling_scientific.txt"))
    assert (res.count, res.mean_ms, res.std_ms, res.min_ms, res.max_ms) == (50, 2950.34, 109.798, 2727.568, 3189.954)
    assert res.median_ms is None and res.p50_ms == 2950.34  # no median printed: p50 falls back to the mean
    assert (res.init_ms, res.first_inference_ms, res.warmup_avg_ms) == (17.187, 3512.391, 3512.39)
    assert (res.init_memory_mb, res.peak_memory_mb) == (4.21094, 46.0859)
    assert res.delegate_applied("xnnpack") == "none"


def test_classic_old_peak_memory_wording() -> None:
    res = parse_benchmark_output(fixture("classic_old_peak_memory.txt"))
    assert (res.init_memory_mb, res.overall_memory_mb, res.peak_memory_mb) == (4.92969, 138.809, 138.809)
    assert res.mean_ms is None and res.count is None  # nothing guessed


EXPECTED_PROFILE = [
    OpTypeStat("Convolution (NHWC, QC8) IGEMM", 5, 0.902, 58.571),
    OpTypeStat("Convolution (NHWC, QC8) DWConv", 4, 0.311, 20.195),
    OpTypeStat("Global Average Pooling (NWC, QS8)", 1, 0.146, 9.481),
    OpTypeStat("Fully Connected (NC, QS8) GEMM", 2, 0.121, 7.857),
    OpTypeStat("Convert (NC, F32, QS8)", 1, 0.038, 2.468),
    OpTypeStat("Convert (NC, QS8, F32)", 1, 0.022, 1.429),
]


def test_classic_op_profile_table_of_the_regular_runs() -> None:
    res = parse_benchmark_output(fixture("classic_xnnpack_op_profile.txt"))
    # the profile's own "Timings (microseconds): count=641 ... avg=1540.1" line is not the latency line
    assert (res.count, res.mean_ms, res.median_ms, res.p5_ms, res.p95_ms) == (641, 1.55842, 1.541, 1.501, 1.672)
    assert res.op_profile == EXPECTED_PROFILE  # not the initialisation table (ModifyGraphWithDelegate, ...)
    assert sum(op.count for op in res.op_profile) == 14
    assert res.delegate_applied("xnnpack") == "full"
    assert (res.init_memory_mb, res.peak_memory_mb) == (6.125, 9.875)


def test_litert_compiled_model_output() -> None:
    res = parse_benchmark_output(fixture("litert_compiled_model_profiler.txt"))
    assert res.tool == "litert"
    # microsecond stats from the inference count= line (it agrees with "Inference (avg): 1.21 ms (100 runs)")
    assert (res.count, res.mean_ms, res.std_ms, res.min_ms, res.max_ms) == (100, 1.21387, 0.041, 1.187, 1.604)
    assert (res.median_ms, res.p50_ms) == (1.206, 1.206)
    assert (res.init_ms, res.first_inference_ms, res.warmup_avg_ms) == (24.61, 3.11, 1.43)
    assert (res.init_memory_mb, res.overall_memory_mb, res.peak_memory_mb) == (7.42, 9.18, 12.37)
    assert res.op_profile == EXPECTED_PROFILE
    assert res.delegate_applied("xnnpack") == "full"


def test_litert_block_alone() -> None:
    """Without count= lines the BENCHMARK RESULTS block's 2-decimal figures are used, median unknown."""
    text = "\n".join(line for line in fixture("litert_compiled_model_profiler.txt").splitlines()
                     if "count=" not in line)
    res = parse_benchmark_output(text)
    assert (res.count, res.mean_ms, res.std_ms, res.min_ms, res.max_ms) == (100, 1.21, 0.04, 1.19, 1.60)
    assert res.median_ms is None and res.p50_ms == 1.21


def test_warmup_stats_line_is_not_taken_for_inference() -> None:
    text = ("INFO: count=5 first=200 curr=100 min=100 max=200 avg=120 std=40\n"
            "INFO: Inference timings in us: Init: 1000, First inference: 200, Warmup (avg): 120, Inference (avg): 50\n")
    res = parse_benchmark_output(text)
    assert res.count is None and res.mean_ms == 0.05 and res.min_ms is None


def test_older_delegation_wordings_and_gpu_split() -> None:
    old = "INFO: Replacing 28 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 3 partitions.\n"
    split = "INFO: 28 operations will run on the GPU, and the remaining 3 operations will run on the CPU.\n"
    assert parse_benchmark_output(old + split).delegate_applied("gpu") == "partial: CPU fallback 3 of 31 nodes"
    assert parse_benchmark_output(old).delegate_applied("gpu").startswith(
        "partial: CPU fallback (28 nodes delegated in 3 partitions")
    one = old.replace("28 node(s)", "31 node(s)").replace("3 partitions", "1 partitions")
    assert parse_benchmark_output(one).delegate_applied("gpu") == "full"
    nnapi = "Replacing 10 out of 12 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 3 partitions for subgraph 0."
    assert parse_benchmark_output(nnapi).delegate_applied("nnapi") == "partial: CPU fallback 2 of 12 nodes"


def test_unconsumed_flags_are_reported() -> None:
    res = parse_benchmark_output(fixture("litert_compiled_model_profiler.txt")
                                 + "WARN: Unconsumed cmdline flags: --use_xnnpack=true\n")
    assert res.unconsumed_flags == "--use_xnnpack=true"


# ------------------------------------------------------------------------------ adb (stand-in)


class FakeAdb:
    """The stand-in adb's environment: its argv log, its 'phone' directory, what it answers."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bindir, self.remote, self.log = tmp / "bin", tmp / "phone", tmp / "adb_argv.jsonl"
        bindir.mkdir()
        self.remote.mkdir()
        script = bindir / "adb"
        script.write_text(f"#!{sys.executable}\n" + STAND_IN_ADB)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("FAKE_ADB_LOG", str(self.log))
        monkeypatch.setenv("FAKE_ADB_REMOTE", str(self.remote))
        self.devices(f"{SERIAL}\tdevice")
        self.answer("classic_xnnpack_percentiles.txt")

    def devices(self, *entries: str) -> None:
        self.monkeypatch.setenv("FAKE_ADB_DEVICES", ";".join(entries))

    def answer(self, fixture_name: str, exit_code: int = 0) -> None:
        self.monkeypatch.setenv("FAKE_ADB_FIXTURE", str(FIXTURES / fixture_name))
        self.monkeypatch.setenv("FAKE_ADB_EXIT", str(exit_code))

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAdb:
    return FakeAdb(tmp_path, monkeypatch)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = tmp_path / "student_int8.tflite"
    model.write_bytes(b"TFL3 fake model")
    classic = tmp_path / "benchmark_model"
    classic.write_bytes(b"\x7fELF classic benchmark_model: Inference timings in us")
    litert = tmp_path / "benchmark_model_litert"
    litert.write_bytes(b"\x7fELF" + b"\0" * 100 + b"\n========== BENCHMARK RESULTS ==========\0require_full_delegation")
    return {"model": model, "classic": classic, "litert": litert}


def bench_line(calls: list[list[str]]) -> str:
    [line] = [c[-1] for c in calls if c[2:3] == ["shell"] and REMOTE_BINARY + " " in c[-1]]
    return line


def test_run_android_issues_the_commands_and_parses_the_row(fake_adb: FakeAdb, files: dict[str, Path]) -> None:
    target = AndroidTarget(None, files["classic"], taskset_mask="f0")
    row = run_android(files["model"], target, threads=4)
    calls = fake_adb.calls()
    s = ["-s", SERIAL]
    assert calls[:-1] == [
        ["devices"],
        [*s, "shell", "getprop", "ro.product.model"],
        [*s, "shell", "getprop", "ro.product.cpu.abi"],
        [*s, "push", str(files["classic"]), "/data/local/tmp/benchmark_model"],
        [*s, "shell", "chmod", "+x", "/data/local/tmp/benchmark_model"],
        [*s, "push", str(files["model"]), "/data/local/tmp/student_int8.tflite"],
        [*s, "shell", "taskset f0 /data/local/tmp/benchmark_model --graph=/data/local/tmp/student_int8.tflite "
                      "--num_threads=4 --warmup_runs=10 --num_runs=100 --use_xnnpack=true "
                      "--enable_op_profiling=true > /data/local/tmp/benchmark_model_output.txt 2>&1; "
                      "echo benchmark_model_exit=$?"],
    ]
    assert calls[-1][:4] == [*s, "pull", REMOTE_OUTPUT]
    assert (fake_adb.remote / "benchmark_model").read_bytes() == files["classic"].read_bytes()
    assert row["status"] == "ok"
    assert (row["artifact"], row["backend"], row["threads"], row["device"], row["tool"]) == (
        "student_int8.tflite", "android", 4, "Pixel 7 (arm64-v8a)", "tflite")
    assert (row["latency_p50_ms"], row["p50_source"], row["latency_mean_ms"], row["latency_count"]) == (
        42.419, "median", 42.3948, 24)
    assert (row["latency_min_ms"], row["latency_max_ms"], row["latency_std_ms"]) == (41.938, 42.84, 0.188)
    assert (row["init_ms"], row["first_inference_ms"], row["peak_memory_mb"]) == (207.799, 90.71, 26.6797)
    assert (row["delegate"], row["delegate_applied"]) == ("xnnpack", "partial: CPU fallback 32 of 2168 nodes")
    assert "xnnpack delegate: partial: CPU fallback 32 of 2168 nodes" in row["notes"]  # never silent
    assert any("no 'Summary by node type'" in n for n in row["notes"])  # asked for a profile, got none


@pytest.mark.parametrize("delegate, flag", [("gpu", "--use_gpu=true"), ("nnapi", "--use_nnapi=true"),
                                            ("cpu", "--use_xnnpack=false")])
def test_classic_delegate_flags_without_taskset_or_profiling(fake_adb: FakeAdb, files: dict[str, Path],
                                                             delegate: str, flag: str) -> None:
    target = AndroidTarget(SERIAL, files["classic"], delegate=delegate, warmup_runs=3, num_runs=20,
                           op_profiling=False)
    row = run_android(files["model"], target, threads=2)
    line = bench_line(fake_adb.calls())
    assert line.startswith("/data/local/tmp/benchmark_model --graph=/data/local/tmp/student_int8.tflite "
                           f"--num_threads=2 --warmup_runs=3 --num_runs=20 {flag} > ")
    assert "enable_op_profiling" not in line and "taskset" not in line
    assert row["status"] == "ok" and row["delegate"] == delegate
    if delegate != "cpu":  # the fixture shows only XNNPACK: the requested delegate took nothing
        assert row["delegate_applied"] == "none"
        assert any(f"{delegate} delegate took no nodes" in n and "TfLiteXNNPackDelegate" in n for n in row["notes"])


def test_litert_binary_is_detected_and_gets_its_own_flags(fake_adb: FakeAdb, files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    fake_adb.answer("litert_compiled_model_profiler.txt")
    target = AndroidTarget(SERIAL, files["litert"], delegate="gpu")
    row = run_android(files["model"], target, threads=4, log_dir=tmp_path / "logs")
    assert " --use_gpu=true --use_profiler=true > " in bench_line(fake_adb.calls())
    assert row["status"] == "ok" and row["tool"] == "litert"
    assert (row["latency_p50_ms"], row["latency_mean_ms"], row["init_ms"], row["peak_memory_mb"]) == (
        1.206, 1.21387, 24.61, 12.37)
    assert row["op_profile"][0] == {"node_type": "Convolution (NHWC, QC8) IGEMM", "count": 5, "avg_ms": 0.902,
                                    "percent": 58.571}
    assert Path(row["log"]).read_text() == fixture("litert_compiled_model_profiler.txt")
    run_android(files["model"], AndroidTarget(SERIAL, files["litert"], op_profiling=False), threads=1)
    assert " --use_cpu=true > " in bench_line(fake_adb.calls()[-9:])


def test_detect_tool(files: dict[str, Path]) -> None:
    assert detect_tool(files["classic"]) == "tflite"
    assert detect_tool(files["litert"]) == "litert"


def test_litert_has_no_nnapi(fake_adb: FakeAdb, files: dict[str, Path]) -> None:
    row = run_android(files["model"], AndroidTarget(SERIAL, files["litert"], delegate="nnapi"), threads=1)
    assert row["status"].startswith("skipped: the LiteRT CompiledModel benchmark_model has no NNAPI delegate")
    assert fake_adb.calls() == []


def test_unauthorized_device_is_a_failed_row(fake_adb: FakeAdb, files: dict[str, Path]) -> None:
    fake_adb.devices("R58M\tunauthorized")
    row = run_android(files["model"], AndroidTarget(None, files["classic"]), threads=1)
    assert row["status"] == ("failed: Android device R58M is unauthorized; unlock it and accept the "
                             "'Allow USB debugging' prompt, then rerun")
    assert fake_adb.calls() == [["devices"]] and row["latency_p50_ms"] is None


def test_device_selection_errors_name_the_fix(fake_adb: FakeAdb, files: dict[str, Path]) -> None:
    fake_adb.devices("A1\tdevice", "B2\tdevice")
    row = run_android(files["model"], AndroidTarget(None, files["classic"]), threads=1)
    assert row["status"].startswith("failed: 2 Android devices attached (A1 (device), B2 (device)); choose one")
    assert run_android(files["model"], AndroidTarget("B2", files["classic"]), threads=1)["status"] == "ok"
    assert "not attached" in run_android(files["model"], AndroidTarget("C3", files["classic"]), threads=1)["status"]
    fake_adb.devices("A1\toffline")
    assert "adb reconnect" in run_android(files["model"], AndroidTarget(None, files["classic"]), threads=1)["status"]
    fake_adb.devices()
    row = run_android(files["model"], AndroidTarget(None, files["classic"]), threads=1)
    assert row["status"].startswith("failed: no Android device attached")


def test_missing_binary_names_the_fix(fake_adb: FakeAdb, files: dict[str, Path], tmp_path: Path) -> None:
    row = run_android(files["model"], AndroidTarget(None, tmp_path / "nope" / "benchmark_model"), threads=1)
    assert row["status"].startswith(f"failed: benchmark_model binary not found at {tmp_path / 'nope'}")
    assert "docs/benchmarks.md" in row["status"] and "bazel" in row["status"]
    assert fake_adb.calls() == []


def test_missing_adb_names_the_fix(files: dict[str, Path]) -> None:
    row = run_android(files["model"], AndroidTarget(None, files["classic"]), threads=1, adb="adb-not-installed-here")
    assert row["status"].startswith("failed: adb not found") and "platform-tools" in row["status"]


def test_crash_and_timeout_are_failed_rows(fake_adb: FakeAdb, files: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    crash = tmp_path / "crash.txt"
    crash.write_text("INFO: Loaded model /data/local/tmp/m.tflite\nERROR: Failed to apply GPU delegate.\n")
    monkeypatch.setenv("FAKE_ADB_FIXTURE", str(crash))
    monkeypatch.setenv("FAKE_ADB_EXIT", "1")
    row = run_android(files["model"], AndroidTarget(None, files["classic"], delegate="gpu"), threads=1)
    assert row["status"] == "failed: benchmark_model exited with 1: ERROR: Failed to apply GPU delegate."
    fake_adb.answer("classic_xnnpack_percentiles.txt")
    monkeypatch.setenv("FAKE_ADB_SLEEP", "5")
    row = run_android(files["model"], AndroidTarget(None, files["classic"]), threads=1, timeout_s=0.5)
    assert row["status"].startswith("failed: benchmark_model on the phone did not finish within 0.5 s")


def test_device_info(fake_adb: FakeAdb, files: dict[str, Path]) -> None:
    assert device_info(AndroidTarget(None, files["classic"])) == {
        "serial": SERIAL, "model": "Pixel 7", "abi": "arm64-v8a"}


def test_target_validation(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="use one of xnnpack, gpu, nnapi, cpu"):
        AndroidTarget(None, files["classic"], delegate="hexagon")
    with pytest.raises(ValueError, match="hex CPU mask"):
        AndroidTarget(None, files["classic"], taskset_mask="big cores")


def test_benchmark_stage_android_rows(fake_adb: FakeAdb, files: dict[str, Path], tmp_path: Path) -> None:
    """The benchmark stage's Android rows: named like the host rows, p50 from the device, one per thread count;
    without a binary, one 'skipped' row per TFLite artifact that says how to get one."""
    import types

    from benchmarks.harness import Target
    from pipeline.config import load_config
    from pipeline.stages.benchmark import _android_rows

    target = Target("student/tflite_int8", "student", "tflite_int8", "int8", "litert", files["model"])
    ctx = types.SimpleNamespace(dir=tmp_path / "stage")
    cfg = load_config("smoke.yaml", [f"benchmark.android.benchmark_model='{files['classic']}'",
                                     "benchmark.threads=[1,4]"])
    rows = _android_rows(cfg, [target], ctx)
    assert [(r["artifact"], r["backend"], r["threads"], r["status"]) for r in rows] == [
        ("student/tflite_int8", "android", 1, "ok"), ("student/tflite_int8", "android", 4, "ok")]
    assert rows[0]["p50_ms"] == 42.419 and rows[0]["delegate_applied"].startswith("partial: CPU fallback")
    skipped = _android_rows(load_config("smoke.yaml"), [target], ctx)
    assert [r["status"].split(":")[0] for r in skipped] == ["skipped"]
    assert "benchmark.android.benchmark_model" in skipped[0]["status"]
