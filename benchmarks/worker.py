"""Time one model in one runtime at one thread count, in a process of its own; print one JSON object.

The harness starts one worker per artifact x backend x thread count so that runtimes never share a
process (thread pools, allocators and JIT caches stay apart), and reads the JSON it prints last.

    python -m benchmarks.worker '{"backend": "onnxruntime", "format": "onnx_int8", "path": "...",
                                  "meta": ".../model_meta.json", "threads": 1, "plan": {...}, "profile": true}'

Backends: ``onnxruntime``, ``litert`` and ``coreml`` open an exported artifact through
``exporters.runtimes``; ``torch`` loads a model with :mod:`benchmarks.models` (``path`` names a
stage folder, ``format`` says which model: ``torch_fp32``, ``torch_int8``, ``torch_teacher``; ``shape``
gives the input shape).

Besides latency, every job reports what deployers compare at start-up (LiteRT's ``benchmark_model``
reports the same kinds of figures): ``import_ms`` (loading the runtime library), ``load_ms`` (opening
the model: parsing, delegate set-up, weight packing), ``first_run_ms`` (the first call), and memory
from this process's peak resident set size (:func:`peak_rss_mb`): ``idle_rss_mb`` before the
runtime is imported (Python, NumPy and this module: what any worker holds), ``peak_rss_mb`` over
import + load + every timed run, and ``rss_increase_mb``, their difference.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.backends import BACKENDS
from benchmarks.timing import TimingPlan, time_repeated

PROFILE_RUNS = 300


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory. Not
    ``ru_maxrss``: Linux carries it over fork and exec, so a worker started by a large parent (the
    pipeline holds torch and the data) would report the parent's peak. Elsewhere ``ru_maxrss`` (bytes
    on macOS), which the harness's fresh worker processes keep meaningful there."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 10  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1e3, 3)


def _input(meta: dict, batch: int = 1) -> np.ndarray:
    """A batch of random images in [0, 1] laid out and typed as the artifact's meta says."""
    from exporters.artifact_io import runtime_inputs

    shape = [batch] + [int(d) for d in meta["input"]["shape"][1:]]
    if meta["input"]["layout"] == "NHWC":  # runtime_inputs expects NCHW and transposes itself
        shape = [shape[0], shape[3], shape[1], shape[2]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return runtime_inputs(x, meta)


def summarize_ort_profile(trace_path: str, runs: int) -> list[dict]:
    """onnxruntime's JSON trace -> per op type: nodes, microseconds per run, share of the total."""
    events = json.loads(Path(trace_path).read_text())
    total: dict[str, float] = {}
    nodes: dict[str, set] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"]["op_name"]
            total[op] = total.get(op, 0.0) + float(e["dur"])
            nodes.setdefault(op, set()).add(e["name"])
    grand = sum(total.values()) or 1.0
    rows = [{"op": op, "nodes": len(nodes[op]), "us_per_run": round(us / runs, 3),
             "percent": round(100 * us / grand, 1)} for op, us in total.items()]
    return sorted(rows, key=lambda r: -r["us_per_run"])


def _profile_onnx(path: str, threads: int, x: np.ndarray) -> list[dict]:
    from exporters.runtimes import OnnxSession

    with tempfile.TemporaryDirectory() as tmp:
        session = OnnxSession(Path(path), threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(PROFILE_RUNS):
            session.run(x)
        return summarize_ort_profile(session.end_profiling(), PROFILE_RUNS)


def run_job(job: dict) -> dict:
    plan = TimingPlan(**job.get("plan", {}))
    threads = int(job["threads"])
    result: dict = {"profile": None, "idle_rss_mb": round(peak_rss_mb(), 1)}
    start = time.perf_counter()
    backend = BACKENDS.get(job["backend"])
    for module in backend.preload if backend else ():
        importlib.import_module(module)
    result["import_ms"] = _ms_since(start)
    start = time.perf_counter()
    if job["backend"] == "torch":
        import torch

        from benchmarks.models import load_torch_model

        torch.set_num_threads(threads)
        model = load_torch_model(job["format"], Path(job["path"]))
        x = torch.rand(*job["shape"], generator=torch.Generator().manual_seed(0))

        def call() -> object:
            with torch.inference_mode():
                return model(x)
        result["how"] = f"torch {torch.__version__} eager, {threads} thread(s)"
    else:
        from exporters.runtimes import open_runtime

        meta = json.loads(Path(job["meta"]).read_text())
        x = _input(meta)
        session = open_runtime(job["format"], Path(job["path"]), threads)

        def call() -> object:
            return session.run(x)
    result["load_ms"] = _ms_since(start)
    start = time.perf_counter()
    call()
    result["first_run_ms"] = _ms_since(start)
    if job["backend"] != "torch":
        result["how"] = session.how
        if job.get("profile") and job["backend"] == "onnxruntime":
            result["profile"] = _profile_onnx(job["path"], threads, x)
    result.update(time_repeated(call, plan))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["rss_increase_mb"] = round(result["peak_rss_mb"] - result["idle_rss_mb"], 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(argv[0])
    print(json.dumps(run_job(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
