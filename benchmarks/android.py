"""Android backend of the benchmark: run a ``.tflite`` with ``benchmark_model`` on a phone over adb.

    from benchmarks.android import AndroidTarget, run_android
    row = run_android(Path("student_int8.tflite"), AndroidTarget(None, Path("~/bin/benchmark_model")), threads=4)

Pushes the user's ``benchmark_model`` binary (not on PyPI: docs/benchmarks.md says where to get it) and the
model to ``/data/local/tmp``, runs it with the thread count, delegate, warm-up and run counts (and an
optional ``taskset`` CPU mask), writes its output to a file on the phone, pulls that file and parses
it with ``benchmarks.benchmark_model_output``. The two binaries in circulation take different flags:
the classic TFLite one (``--use_xnnpack/--use_gpu/--use_nnapi``, ``--enable_op_profiling``) and the
LiteRT CompiledModel one (``--use_cpu/--use_gpu``, ``--use_profiler``); which one the user has is
read from the binary's own strings unless ``tool`` says it.

Every outcome is one result row (``status`` ``ok`` / ``failed: reason`` / ``skipped: reason``): a
missing adb, an unplugged or unauthorized phone, a crash or a timeout is a row naming the fix, never
an exception. Tested against a stand-in ``adb`` (no phone was attached when this was written).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.benchmark_model_output import BenchmarkModelResult, parse_benchmark_output
from pipeline.runs import atomic_path

log = logging.getLogger(__name__)

REMOTE_DIR = "/data/local/tmp"
REMOTE_BINARY = f"{REMOTE_DIR}/benchmark_model"
REMOTE_OUTPUT = f"{REMOTE_DIR}/benchmark_model_output.txt"
DELEGATES = ("xnnpack", "gpu", "nnapi", "cpu")
TOOLS = ("auto", "tflite", "litert")
GET_BINARY = ("download the android_arm64 benchmark_model (TensorFlow Lite or LiteRT nightly) or build it "
              "with bazel, see docs/benchmarks.md, Android")
# Strings only the LiteRT CompiledModel binary carries (its result banner and one of its flags).
_LITERT_MARKERS = (b"BENCHMARK RESULTS ==", b"require_full_delegation")
_EXIT_MARK = "benchmark_model_exit="
ROW_FIELDS = ("artifact", "backend", "threads", "device", "status", "tool", "delegate", "delegate_applied",
              "latency_p50_ms", "p50_source", "latency_mean_ms", "latency_std_ms", "latency_min_ms",
              "latency_max_ms", "latency_p5_ms", "latency_p95_ms", "latency_count", "init_ms",
              "first_inference_ms", "peak_memory_mb", "op_profile", "notes", "log")


class AndroidError(RuntimeError):
    """A device or setup problem; the message is one line that names the fix."""


@dataclass
class AndroidTarget:
    """What the user asks for: which phone, which binary, and how to run it."""

    serial: str | None  # adb -s SERIAL; None = the only device attached
    benchmark_model: Path  # the user's binary on the host, pushed to /data/local/tmp
    delegate: str = "xnnpack"  # xnnpack | gpu | nnapi | cpu (cpu: no delegate, TFLite's own kernels)
    warmup_runs: int = 10
    num_runs: int = 100
    taskset_mask: str | None = None  # hex CPU mask for ``taskset``, e.g. "f0" for the big cores
    op_profiling: bool = True
    tool: str = "auto"  # auto | tflite | litert: which benchmark_model the binary is

    def __post_init__(self) -> None:
        self.benchmark_model = Path(self.benchmark_model).expanduser()
        if self.delegate not in DELEGATES:
            raise ValueError(f"unknown Android delegate {self.delegate!r}; use one of {', '.join(DELEGATES)}")
        if self.tool not in TOOLS:
            raise ValueError(f"unknown benchmark_model tool {self.tool!r}; use one of {', '.join(TOOLS)}")
        if self.warmup_runs < 0 or self.num_runs < 1:
            raise ValueError(f"warmup_runs={self.warmup_runs}, num_runs={self.num_runs}: "
                             "use warmup_runs >= 0 and num_runs >= 1")
        if self.taskset_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", self.taskset_mask):
            raise ValueError(f"taskset mask {self.taskset_mask!r} is not a hex CPU mask; use e.g. 'f0' (CPUs 4-7)")


def find_adb(adb: str = "adb") -> str:
    """The adb executable to call, or AndroidError naming how to install it."""
    found = shutil.which(adb)
    if found is None:
        raise AndroidError(f"adb not found ({adb!r} is not on PATH); install Android platform-tools "
                           "(e.g. `apt install adb`) or pass the adb path")
    return found


def _run(cmd: list[str], timeout_s: float, what: str,
         hint: str = "check the phone and the cable, or raise the timeout") -> subprocess.CompletedProcess[str]:
    """subprocess.run with a timeout; a timeout or a non-zero exit becomes AndroidError."""
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise AndroidError(f"{what} did not finish within {timeout_s:g} s; {hint}") from err
    except OSError as err:
        raise AndroidError(f"{what} could not start: {err}") from err
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise AndroidError(f"{what} failed (exit {proc.returncode}): {detail[-1] if detail else 'no output'}")
    return proc


def list_devices(adb: str, timeout_s: float = 30) -> list[tuple[str, str]]:
    """(serial, state) pairs from ``adb devices``; state is e.g. device, unauthorized, offline."""
    out = _run([adb, "devices"], timeout_s, "`adb devices`").stdout
    pairs = []
    for line in out.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue
        serial, _, state = line.strip().partition("\t") if "\t" in line else line.strip().partition(" ")
        pairs.append((serial.strip(), state.strip()))
    return pairs


def select_device(serial: str | None, adb: str, timeout_s: float = 30) -> str:
    """The serial to use, checked to be attached and authorized, or AndroidError naming the fix."""
    devices = list_devices(adb, timeout_s)
    listed = ", ".join(f"{s} ({st})" for s, st in devices) or "none"
    if serial is None:
        if not devices:
            raise AndroidError("no Android device attached (`adb devices` lists none); connect a phone with "
                               "USB debugging enabled")
        if len(devices) > 1:
            raise AndroidError(f"{len(devices)} Android devices attached ({listed}); choose one with its serial "
                               "(adb -s SERIAL)")
        serial = devices[0][0]
    states = dict(devices)
    if serial not in states:
        raise AndroidError(f"Android device {serial} is not attached (`adb devices` lists: {listed}); "
                           "connect it or fix the serial")
    state = states[serial]
    if state == "unauthorized":
        raise AndroidError(f"Android device {serial} is unauthorized; unlock it and accept the "
                           "'Allow USB debugging' prompt, then rerun")
    if state == "offline":
        raise AndroidError(f"Android device {serial} is offline; reconnect the cable or run `adb reconnect`")
    if state != "device":
        raise AndroidError(f"Android device {serial} is in state {state!r}, not ready; fix its adb "
                           "connection (permissions, boot) and rerun")
    return serial


def _device_props(adb: str, serial: str, timeout_s: float = 30) -> dict[str, str]:
    props = {}
    for key, prop in (("model", "ro.product.model"), ("abi", "ro.product.cpu.abi")):
        props[key] = _run([adb, "-s", serial, "shell", "getprop", prop], timeout_s, f"getprop {prop}").stdout.strip()
    return props


def device_info(target: AndroidTarget, adb: str = "adb", timeout_s: float = 30) -> dict[str, str]:
    """serial, model (ro.product.model) and abi (ro.product.cpu.abi) of the target phone.

    Raises AndroidError (one line naming the fix) when adb or the phone is not usable.
    """
    adb_path = find_adb(adb)
    serial = select_device(target.serial, adb_path, timeout_s)
    return {"serial": serial, **_device_props(adb_path, serial, timeout_s)}


def detect_tool(binary: Path) -> str:
    """``litert`` if the binary carries the LiteRT CompiledModel tool's strings, else ``tflite``."""
    tail = b""
    with open(binary, "rb") as fh:
        while chunk := fh.read(1 << 22):
            window = tail + chunk
            if any(marker in window for marker in _LITERT_MARKERS):
                return "litert"
            tail = window[-64:]
    return "tflite"


def _delegate_flags(delegate: str, tool: str) -> list[str]:
    if tool == "litert":  # CompiledModel: CPU (XNNPACK) is on by default; GPU adds to it
        return ["--use_gpu=true"] if delegate == "gpu" else ["--use_cpu=true"]
    return {"xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"],
            "cpu": ["--use_xnnpack=false"]}[delegate]


def benchmark_command(remote_model: str, target: AndroidTarget, threads: int, tool: str) -> str:
    """The shell line run on the phone: output to a file there, exit status echoed for the host."""
    argv = ["taskset", target.taskset_mask] if target.taskset_mask else []
    argv += [REMOTE_BINARY, f"--graph={remote_model}", f"--num_threads={threads}",
             f"--warmup_runs={target.warmup_runs}", f"--num_runs={target.num_runs}",
             *_delegate_flags(target.delegate, tool)]
    if target.op_profiling:
        argv.append("--use_profiler=true" if tool == "litert" else "--enable_op_profiling=true")
    return f"{' '.join(argv)} > {REMOTE_OUTPUT} 2>&1; echo {_EXIT_MARK}$?"


def _empty_row(model_path: Path, target: AndroidTarget, threads: int) -> dict:
    row: dict = dict.fromkeys(ROW_FIELDS)
    row.update(artifact=model_path.name, backend="android", threads=threads, delegate=target.delegate, notes=[])
    return row


def _fill_row(row: dict, res: BenchmarkModelResult, target: AndroidTarget, tool: str) -> None:
    row.update(tool=res.tool if res.tool != "unknown" else tool, latency_p50_ms=res.p50_ms,
               p50_source="median" if res.median_ms is not None else ("mean" if res.mean_ms is not None else None),
               latency_mean_ms=res.mean_ms, latency_std_ms=res.std_ms, latency_min_ms=res.min_ms,
               latency_max_ms=res.max_ms, latency_p5_ms=res.p5_ms, latency_p95_ms=res.p95_ms,
               latency_count=res.count, init_ms=res.init_ms, first_inference_ms=res.first_inference_ms,
               peak_memory_mb=res.peak_memory_mb, delegate_applied=res.delegate_applied(target.delegate),
               op_profile=[vars(op) for op in res.op_profile])
    if row["delegate_applied"].startswith("partial"):
        row["notes"].append(f"{target.delegate} delegate: {row['delegate_applied']}")
    elif row["delegate_applied"] == "none" and target.delegate != "cpu":
        others = ", ".join(sorted({d.delegate for d in res.delegations})) or "none"
        row["notes"].append(f"{target.delegate} delegate took no nodes: the model ran on the CPU "
                            f"(delegates that did apply: {others})")
    if res.unconsumed_flags:
        row["notes"].append(f"benchmark_model ignored flags {res.unconsumed_flags}; set tool='litert' or "
                            "'tflite' to match the binary")
    if target.op_profiling and not res.op_profile:
        row["notes"].append("op profiling was asked for but the output has no 'Summary by node type' table")


def run_android(model_path: Path, target: AndroidTarget, threads: int, adb: str = "adb",
                timeout_s: float = 300, log_dir: Path | None = None) -> dict:
    """Benchmark one model on the phone; one result row (see ROW_FIELDS), never raises for device problems.

    ``log_dir``: where to keep the pulled raw output (``<model>.android.<delegate>.t<threads>.txt``,
    named in the row's ``log``); a temporary directory otherwise.
    """
    model_path = Path(model_path)
    row = _empty_row(model_path, target, threads)
    if not model_path.is_file():
        row["status"] = f"failed: model file {model_path} not found; export it first"
        return row
    if not target.benchmark_model.is_file():
        row["status"] = f"failed: benchmark_model binary not found at {target.benchmark_model}; {GET_BINARY}"
        return row
    try:
        tool = detect_tool(target.benchmark_model) if target.tool == "auto" else target.tool
    except OSError as err:
        row["status"] = f"failed: cannot read benchmark_model binary {target.benchmark_model} ({err}); fix its permissions"
        return row
    row["tool"] = tool
    if tool == "litert" and target.delegate == "nnapi":
        row["status"] = ("skipped: the LiteRT CompiledModel benchmark_model has no NNAPI delegate; use "
                         "delegate xnnpack or gpu, or the classic TFLite benchmark_model")
        return row
    try:
        adb_path = find_adb(adb)
        serial = select_device(target.serial, adb_path)
        props = _device_props(adb_path, serial)
        row["device"] = f"{props['model']} ({props['abi']})"
        text, exit_code, row["log"] = _push_run_pull(adb_path, serial, model_path, target, threads, tool,
                                                      timeout_s, log_dir)
    except AndroidError as err:
        row["status"] = f"failed: {err}"
        return row
    res = parse_benchmark_output(text)
    _fill_row(row, res, target, tool)
    if exit_code not in (None, 0) or res.mean_ms is None:
        why = res.errors[-1] if res.errors else (text.strip().splitlines() or ["no output"])[-1]
        row["status"] = (f"failed: benchmark_model exited with {exit_code}: {why}" if exit_code not in (None, 0)
                         else f"failed: benchmark_model printed no inference timings: {why}")
    else:
        row["status"] = "ok"
    log.info("android %s threads=%d %s: %s p50=%s ms", model_path.name, threads, target.delegate,
             row["status"], row["latency_p50_ms"])
    return row


def _push_run_pull(adb: str, serial: str, model_path: Path, target: AndroidTarget, threads: int, tool: str,
                   timeout_s: float, log_dir: Path | None) -> tuple[str, int | None, str | None]:
    """Push binary and model, run, pull the output file: (its text, exit status, kept log path)."""
    base = [adb, "-s", serial]
    remote_model = f"{REMOTE_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', model_path.name)}"
    push_timeout = max(120.0, timeout_s)
    _run([*base, "push", str(target.benchmark_model), REMOTE_BINARY], push_timeout, "pushing benchmark_model")
    _run([*base, "shell", "chmod", "+x", REMOTE_BINARY], 30, "chmod +x benchmark_model")
    _run([*base, "push", str(model_path), remote_model], push_timeout, f"pushing {model_path.name}")
    proc = _run([*base, "shell", benchmark_command(remote_model, target, threads, tool)], timeout_s,
                "benchmark_model on the phone",
                hint="it may still be running there; lower num_runs or raise timeout_s")
    found = re.search(rf"{_EXIT_MARK}(\d+)", proc.stdout)
    exit_code = int(found.group(1)) if found else None
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(log_dir) if log_dir is not None else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        local = out_dir / f"{model_path.stem}.android.{target.delegate}.t{threads}.txt"
        with atomic_path(local) as pulled:
            _run([*base, "pull", REMOTE_OUTPUT, str(pulled)], 60, "pulling the benchmark_model output")
        text = local.read_text(errors="replace")
    return text, exit_code, str(local) if log_dir is not None else None
